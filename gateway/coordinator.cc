#include "gateway/coordinator.h"

#include <prometheus/text_serializer.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/log.h"
#include "sidecar/event/schema.h"
#include "sidecar/participant/protocol.h"

namespace datashare::gateway {
namespace bhttp = boost::beast::http;
using clock = std::chrono::steady_clock;

namespace {

std::string json_error(const std::string& message, const std::string& participant = "") {
  nlohmann::json j{{"error", message}};
  if (!participant.empty()) j["participant"] = participant;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

constexpr std::size_t kMaxBatchBytes = 256 << 10;

// Latencies of the transaction's steps: fine where P5's bar is (p99 25 ms), coarse beyond.
prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.1, 0.25, 1, 5};
}

double seconds_since(clock::time_point from, clock::time_point now) {
  return std::chrono::duration<double>(now - from).count();
}

std::string reason_of(const link_reply& r) {
  if (!r.answered) return r.error;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object()) {
    for (const char* m : {"reason", "error"}) {
      if (auto it = j.find(m); it != j.end() && it->is_string()) return it->get<std::string>();
    }
  }
  return "answered " + std::to_string(r.status);
}

}  // namespace

http_link::http_link(const std::vector<boost::asio::io_context*>& contexts, const sidecar::http::origin& where,
                     std::size_t max_in_flight, prometheus::Histogram* messages)
    : max_in_flight_(std::max<std::size_t>(1, max_in_flight)), messages_(messages) {
  for (auto* ioc : contexts) {
    auto l = std::make_unique<lane>();
    l->client = std::make_unique<sidecar::http::async_client>(*ioc, where);
    lanes_.push_back(std::move(l));
  }
}

http_link::lane& http_link::pick(std::size_t hint) {
  if (hint < lanes_.size()) return *lanes_[hint];
  if (auto i = lane_here(); i != npos) return *lanes_[i];
  return *lanes_[next_.fetch_add(1, std::memory_order_relaxed) % lanes_.size()];
}

std::size_t http_link::lane_here() const {
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    if (lanes_[i]->client->context().get_executor().running_in_this_thread()) return i;
  }
  return npos;
}

std::string http_link::describe(const std::string& what) const {
  const auto& w = lanes_.front()->client->where();
  return "http://" + w.host + ":" + w.port + ": " + what;
}

void http_link::call_async(const std::string& op, const std::string& tx, std::string body, clock::time_point deadline,
                           callback done) {
  call_async_on(npos, op, tx, std::move(body), deadline, std::move(done));
}

void http_link::call_async_on(std::size_t lane_index, const std::string& op, const std::string& tx, std::string body,
                              clock::time_point deadline, callback done) {
  queued q{op, tx, std::move(body), deadline, std::move(done)};
  if (!batches_.load(std::memory_order_relaxed)) {
    send_one(pick(lane_index), std::move(q), false);
    return;
  }
  auto& l = pick(lane_index);
  {
    std::lock_guard lock(l.mu);
    if (l.in_flight >= max_in_flight_) {
      l.waiting.push_back(std::move(q));
      return;
    }
    ++l.in_flight;
  }
  send_one(l, std::move(q), true);
}

void http_link::next(lane& l) {
  std::vector<queued> batch;
  {
    std::lock_guard lock(l.mu);
    if (l.waiting.empty()) {
      --l.in_flight;
      return;
    }
    // Up to kMaxBatch messages and about kMaxBatchBytes (the participant's request limit is 1
    // MiB); one larger message goes alone.
    std::size_t n = 0, bytes = 0;
    while (n < l.waiting.size() && n < sidecar::participant::kMaxBatch) {
      bytes += l.waiting[n].body.size() + 100;
      if (n > 0 && bytes > kMaxBatchBytes) break;
      ++n;
    }
    if (n == l.waiting.size()) {
      batch.swap(l.waiting);
    } else {
      auto end = l.waiting.begin() + static_cast<std::ptrdiff_t>(n);
      batch.assign(std::make_move_iterator(l.waiting.begin()), std::make_move_iterator(end));
      l.waiting.erase(l.waiting.begin(), end);
    }
  }
  if (batch.size() == 1) {
    send_one(l, std::move(batch.front()), true);
  } else {
    send_batch(l, std::move(batch));
  }
}

void http_link::send_one(lane& l, queued q, bool counted) {
  if (messages_ != nullptr) messages_->Observe(1);
  std::string target;
  target.reserve(16 + q.tx.size() + q.op.size());
  target.append("/v1/tx/").append(q.tx).append("/").append(q.op);
  l.client->call(bhttp::verb::post, std::move(target), std::move(q.body), q.deadline,
                 [this, &l, counted, done = std::move(q.done)](std::error_code ec, sidecar::http::client_reply r) {
                   // The next request goes out before this answer is handled.
                   if (counted) next(l);
                   link_reply out;
                   if (ec) {
                     out.timed_out = ec == std::errc::timed_out;
                     out.error = describe(ec.message());
                   } else {
                     out.answered = true;
                     out.status = r.status;
                     out.body = std::move(r.body);
                   }
                   done(std::move(out));
                 });
}

void http_link::send_batch(lane& l, std::vector<queued> batch) {
  if (messages_ != nullptr) messages_->Observe(static_cast<double>(batch.size()));
  std::string body;
  std::size_t size = 0;
  auto deadline = batch.front().deadline;
  for (const auto& q : batch) {
    size += q.op.size() + q.tx.size() + q.body.size() + 16;
    deadline = std::min(deadline, q.deadline);  // the earliest: no call waits past its own
  }
  body.reserve(size);
  for (const auto& q : batch) sidecar::participant::append_batch_message(body, q.op, q.tx, q.body);
  auto shared = std::make_shared<std::vector<queued>>(std::move(batch));
  l.client->call(
      bhttp::verb::post, "/v1/batch", std::move(body), deadline,
      [this, &l, shared](std::error_code ec, const sidecar::http::client_reply& r) {
        if (!ec && (r.status == 404 || r.status == 405)) {
          // A participant without POST /v1/batch: these calls and every later one go alone.
          if (batches_.exchange(false)) {
            log::warn("gateway: participant does not take batches; calling it one message at a time",
                      {{"participant", describe("POST /v1/batch answered " + std::to_string(r.status))}});
          }
          next(l);
          for (auto& q : *shared) send_one(l, std::move(q), false);
          return;
        }
        next(l);
        std::vector<sidecar::participant::batch_answer> answers;
        std::string problem;
        if (ec) {
          problem = describe(ec.message());
        } else if (r.status != 200) {
          problem = describe("POST /v1/batch answered " + std::to_string(r.status) + ": " + r.body.substr(0, 200));
        } else if (auto bad = sidecar::participant::decode_batch_answers(r.body, answers); !bad.empty()) {
          problem = describe("POST /v1/batch: " + bad);
        } else if (answers.size() != shared->size()) {
          problem = describe("POST /v1/batch: " + std::to_string(answers.size()) + " answers to " +
                             std::to_string(shared->size()) + " messages");
        }
        for (std::size_t i = 0; i < shared->size(); ++i) {
          link_reply out;
          if (!problem.empty()) {
            out.timed_out = ec == std::errc::timed_out;
            out.error = problem;
          } else {
            out.answered = true;
            out.status = answers[i].status;
            out.body = std::move(answers[i].body);
          }
          auto done = std::move((*shared)[i].done);
          done(std::move(out));
        }
      },
      sidecar::participant::kBatchContentType);
}

link_reply http_link::call(const std::string& op, const std::string& tx, const std::string& body,
                           clock::time_point deadline) {
  auto p = std::make_shared<std::promise<link_reply>>();
  auto f = p->get_future();
  call_async(op, tx, body, deadline, [p](link_reply r) { p->set_value(std::move(r)); });
  try {
    return f.get();
  } catch (const std::future_error&) {  // the I/O threads went away with the call
    link_reply out;
    out.error = "stopping";
    return out;
  }
}

gateway_metrics::gateway_metrics(const std::vector<participant_spec>& participants)
    : registry(std::make_shared<prometheus::Registry>()),
      transactions(
          prometheus::BuildCounter()
              .Name("datashare_gateway_transactions_total")
              .Help("Transactions by outcome: committed, aborted, conflict (409), timeout (504), invalid (400), "
                    "in_doubt (503, the commit record could not be made durable; the restart decides)")
              .Register(*registry)),
      committed(transactions.Add({{"outcome", "committed"}})),
      aborted(transactions.Add({{"outcome", "aborted"}})),
      conflict(transactions.Add({{"outcome", "conflict"}})),
      invalid(transactions.Add({{"outcome", "invalid"}})),
      timeout(transactions.Add({{"outcome", "timeout"}})),
      in_doubt_outcome(transactions.Add({{"outcome", "in_doubt"}})),
      duration(prometheus::BuildHistogram()
                   .Name("datashare_gateway_transaction_duration_seconds")
                   .Help("From the request to the answer, for transactions that reached the participants")
                   .Register(*registry)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                    0.5, 1, 2.5, 5, 10})),
      in_doubt(prometheus::BuildGauge()
                   .Name("datashare_gateway_in_doubt")
                   .Help("Transactions not yet acknowledged by every participant: decided ones (retried) and "
                         "those whose commit record could not be made durable (decided by the restart)")
                   .Register(*registry)
                   .Add({})),
      call_messages(prometheus::BuildHistogram()
                        .Name("datashare_gateway_participant_call_messages")
                        .Help("Messages per request to a participant: 1 a single call, more a POST /v1/batch of the "
                              "calls that queued behind one in flight")
                        .Register(*registry)
                        .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512})),
      phases(prometheus::BuildHistogram()
                 .Name("datashare_gateway_phase_seconds")
                 .Help("A committed transaction's phases: begin (request to begin record written), prepare (to the "
                       "last vote), decision (commit record queued to fsync'd), commit (to the last acknowledgement)")
                 .Register(*registry)),
      phase_begin(phases.Add({{"phase", "begin"}}, latency_buckets())),
      phase_prepare(phases.Add({{"phase", "prepare"}}, latency_buckets())),
      phase_decision(phases.Add({{"phase", "decision"}}, latency_buckets())),
      phase_commit(phases.Add({{"phase", "commit"}}, latency_buckets())),
      log_sync(prometheus::BuildHistogram()
                   .Name("datashare_gateway_log_sync_seconds")
                   .Help("The decision log's fdatasync of appended records")
                   .Register(*registry)
                   .Add({}, latency_buckets())),
      log_sync_commits(prometheus::BuildHistogram()
                           .Name("datashare_gateway_log_sync_commits")
                           .Help("Commit records made durable by one fdatasync of the decision log (group size)")
                           .Register(*registry)
                           .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128})) {
  auto& errors = prometheus::BuildCounter()
                     .Name("datashare_gateway_participant_errors_total")
                     .Help("Calls to a participant that failed: no answer, or an answer other than the protocol's")
                     .Register(*registry);
  auto& calls = prometheus::BuildHistogram()
                    .Name("datashare_gateway_participant_call_seconds")
                    .Help("A participant call from being made to its answer (op prepare, or finish: commit or abort)")
                    .Register(*registry);
  for (const auto& p : participants) {
    participant_errors[p.name] = &errors.Add({{"participant", p.name}});
    participant_prepare[p.name] = &calls.Add({{"participant", p.name}, {"op", "prepare"}}, latency_buckets());
    participant_finish[p.name] = &calls.Add({{"participant", p.name}, {"op", "finish"}}, latency_buckets());
  }
}

std::string gateway_metrics::serialize() const {
  prometheus::TextSerializer s;
  return s.Serialize(registry->Collect());
}

std::optional<crash_point> parse_crash_point(std::string_view text) {
  crash_point c;
  auto colon = text.find(':');
  std::string_view name = text.substr(0, colon);
  if (name == "after-prepare") {
    c.at = crash_point::where::after_prepare;
  } else if (name == "after-decision") {
    c.at = crash_point::where::after_decision;
  } else if (name == "during-commit") {
    c.at = crash_point::where::during_commit;
  } else {
    return std::nullopt;
  }
  if (colon != std::string_view::npos) {
    std::string_view n = text.substr(colon + 1);
    auto second = n.find(':');
    std::string_view first = second == std::string_view::npos ? std::string_view() : n.substr(second + 1);
    n = n.substr(0, second);
    auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), c.nth);
    if (ec != std::errc() || ptr != n.data() + n.size() || c.nth < 1) return std::nullopt;
    if (second != std::string_view::npos) {
      auto [fptr, fec] = std::from_chars(first.data(), first.data() + first.size(), c.first);
      if (fec != std::errc() || fptr != first.data() + first.size()) return std::nullopt;
    }
  }
  return c;
}

coordinator::coordinator(gateway_config config, std::vector<std::unique_ptr<participant_link>> links, decision_log& log,
                         gateway_metrics& metrics, coordinator_options options)
    : config_(std::move(config)),
      links_(std::move(links)),
      log_(log),
      metrics_(metrics),
      options_(std::move(options)),
      product_body_(sidecar::participant::encode_product(config_.product.name)),
      rng_(std::random_device{}()) {
  log_.set_snapshot([this] {
    std::vector<log_record> out;
    std::lock_guard lock(mu_);
    for (const auto& [id, t] : active_) {
      out.push_back(record_of(*t, 'B'));
      if (t->state == phase::committing) out.push_back(record_of(*t, 'C'));
    }
    return out;
  });
}

coordinator::~coordinator() {
  stop();
}

void coordinator::stop() {
  {
    std::lock_guard lock(steps_mu_);
    closed_ = true;
  }
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (retry_thread_.joinable()) retry_thread_.join();
  // No timeout: a step's callback may still run until the count is zero, and every participant
  // call has a deadline, so this ends as long as the links' threads run.
  std::unique_lock lock(steps_mu_);
  while (!steps_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return steps_ == 0; })) {
    log::warn("gateway: stopping, waiting for transaction steps in flight", {{"steps", std::to_string(steps_)}});
  }
}

bool coordinator::begin_first_step() {
  std::lock_guard lock(steps_mu_);
  if (closed_) return false;
  ++steps_;
  return true;
}

void coordinator::step_begun() {
  std::lock_guard lock(steps_mu_);
  ++steps_;
}

void coordinator::step_done() {
  // Under the lock, notify included: stop() cannot see zero (and the coordinator go away) before
  // this thread has let go of the mutex, the last member it touches.
  std::lock_guard lock(steps_mu_);
  if (--steps_ == 0) steps_cv_.notify_all();
}

void coordinator::maybe_crash(crash_point::where w) {
  if (options_.crash.at != w) return;
  if (crash_count_.fetch_add(1) + 1 != options_.crash.nth) return;
  log::warn("gateway: crash point reached (DATASHARE_GATEWAY_CRASH_AT), killing myself", {});
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

std::optional<coordinator::tx_bits> coordinator::bits_of(std::string_view id) {
  if (id.size() != 32) return std::nullopt;
  tx_bits b;
  for (std::size_t i = 0; i < 32; ++i) {
    const char c = id[i];
    std::uint64_t v = 0;
    if (c >= '0' && c <= '9') {
      v = static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = static_cast<std::uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;  // new_tx_id writes lower-case hex only: anything else is not one of ours
    }
    auto& half = i < 16 ? b.hi : b.lo;
    half = (half << 4) | v;
  }
  return b;
}

std::string coordinator::new_tx_id() {
  std::lock_guard lock(mu_);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng_()),
                static_cast<unsigned long long>(rng_()));
  return buf;
}

std::uint64_t coordinator::next_version() {
  auto now = static_cast<std::uint64_t>(common::wall_now_us());
  std::uint64_t last = last_version_.load();
  for (;;) {
    std::uint64_t v = std::max(now, last + 1);
    if (last_version_.compare_exchange_weak(last, v)) return v;
  }
}

std::string coordinator::check(const std::string& key, const std::optional<std::string>& body,
                               std::string& value) const {
  if (key.empty()) return "missing key: /v1/data/<product>/<key>";
  if (!sidecar::event::is_valid_utf8(key)) return "the key is not valid UTF-8";
  if (!body) return "";
  auto j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "the body must be a JSON object";
  if (auto problem = sidecar::event::check_entity(j, config_.product, sidecar::event::unknown_fields::reject);
      !problem.empty()) {
    return problem + " (product fields: " + config_.product.field_names() + ")";
  }
  const auto* kf = config_.product.find(config_.product.key);
  auto want = sidecar::event::key_field_value(kf != nullptr ? kf->type : sidecar::config::field_type::string, key);
  if (want.is_discarded()) return "the key \"" + key + "\" is not an integer (the product's key is)";
  auto it = j.find(config_.product.key);
  if (it != j.end() && !it->is_null()) {
    if (*it != want)
      return "field \"" + config_.product.key + "\" must equal the key in the path (" + want.dump() + ")";
  } else if (kf != nullptr) {
    j[config_.product.key] = std::move(want);
  }
  value = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return "";
}

log_record coordinator::record_of(const tx& t, char type) const {
  log_record r;
  r.type = type;
  r.tx = t.id;
  if (type == 'E') return r;
  r.key = t.key;
  r.deleted = t.deleted;
  r.version = t.version;
  r.value = t.value;
  for (const auto& p : config_.participants) r.participants.push_back(p.name);
  return r;
}

update_result coordinator::update(const std::string& key, const std::optional<std::string>& body) {
  std::promise<update_result> p;
  auto f = p.get_future();
  update_async(key, body, [&p](update_result r) { p.set_value(std::move(r)); });
  return f.get();
}

void coordinator::update_async(const std::string& key, const std::optional<std::string>& body, update_callback done) {
  auto started = clock::now();
  std::string value;
  if (auto problem = check(key, body, value); !problem.empty()) {
    metrics_.invalid.Increment();
    done({400, json_error(problem)});
    return;
  }
  // The first step lasts until the `begin` record's callback has returned.
  if (!begin_first_step()) {
    done({503, json_error("the gateway is stopping")});
    return;
  }
  auto t = std::make_shared<tx>();
  t->id = new_tx_id();
  t->key = key;
  t->deleted = !body.has_value();
  t->value = std::move(value);
  t->acked.assign(links_.size(), 0);
  t->started = started;
  t->live = true;
  // Every link has a lane per I/O thread, in the same order (main.cc): the first one's answer
  // holds for all.
  if (!links_.empty()) t->home = links_.front()->lane_here();
  std::string holder;
  {
    std::lock_guard lock(mu_);
    auto [it, inserted] = keys_.emplace(key, t->id);
    if (inserted) {
      t->version = next_version();
      active_[t->id] = t;
    } else {
      holder = it->second;
    }
  }
  if (!holder.empty()) {
    // Answered outside the lock: a caller may start its next transaction from the callback.
    metrics_.conflict.Increment();
    done({409, json_error("key \"" + key + "\" is being changed by transaction " + holder + ": retry")});
    step_done();
    return;
  }
  t->done = std::move(done);
  log_.append(record_of(*t, 'B'), durability::written, [this, t](std::error_code ec) {
    step_end end{this};
    if (ec) {
      release(*t);
      conclude_answer(t, {503, json_error("decision log: " + ec.message())});
      return;
    }
    t->phase_started = clock::now();
    // Phase 1: every participant at once.
    t->votes.assign(links_.size(), {});
    auto r = std::make_shared<round>();
    r->op = "prepare";
    r->deadline = t->started + config_.timeout;
    // Armed for a test: one participant after the other, so the crash leaves the first nth
    // prepared and the others never asked.
    r->one_by_one = options_.crash.at == crash_point::where::after_prepare;
    r->body = [this, t](std::size_t i) {
      sidecar::participant::prepare_request pr{config_.product.name, t->key, t->deleted, t->value, t->version, {}};
      pr.peers.reserve(config_.participants.size() - 1);
      for (std::size_t j = 0; j < config_.participants.size(); ++j) {
        if (j != i) pr.peers.push_back(config_.participants[j].url);
      }
      return sidecar::participant::encode_prepare(pr);
    };
    r->on_reply = [this, t](std::size_t i, link_reply v) {
      if (v.answered && v.status == 200) maybe_crash(crash_point::where::after_prepare);
      t->votes[i] = std::move(v);
    };
    r->on_done = [this, t] { prepared(t); };
    start_round(t, r);
  });
}

void coordinator::start_round(const std::shared_ptr<tx>& t, const std::shared_ptr<round>& r) {
  if (r->one_by_one) {
    r->first = options_.crash.first % links_.size();
    send(t, r, r->first);
    return;
  }
  r->left = links_.size();
  for (std::size_t i = 0; i < links_.size(); ++i) send(t, r, i);
}

void coordinator::send(const std::shared_ptr<tx>& t, const std::shared_ptr<round>& r, std::size_t i) {
  auto next = [this, t, r, i] {
    if (r->one_by_one) {
      const auto n = links_.size();
      if ((i + 1) % n != r->first) {
        send(t, r, (i + 1) % n);
      } else {
        r->on_done();
      }
    } else if (r->left.fetch_sub(1) == 1) {
      r->on_done();
    }
  };
  if (r->op != "prepare" && t->acked[i] != 0) {
    next();
    return;
  }
  step_begun();
  auto* latency = (r->op == "prepare" ? metrics_.participant_prepare : metrics_.participant_finish)
                      .at(config_.participants[i].name);
  links_[i]->call_async_on(t->home, r->op, t->id, r->body(i), r->deadline,
                           [this, r, i, next, latency, sent = clock::now()](link_reply reply) {
                             step_end end{this};
                             latency->Observe(seconds_since(sent, clock::now()));
                             r->on_reply(i, std::move(reply));
                             next();
                           });
}

void coordinator::prepared(const std::shared_ptr<tx>& t) {
  int failed = -1;
  unsigned status = 200;
  auto deadline = t->started + config_.timeout;
  for (std::size_t i = 0; i < t->votes.size(); ++i) {
    const auto& v = t->votes[i];
    if (v.answered && v.status == 200) continue;
    if (!v.answered || v.status >= 500) metrics_.participant_errors.at(config_.participants[i].name)->Increment();
    unsigned s = v.answered && v.status == 409 ? 409 : (v.timed_out || clock::now() >= deadline ? 504 : 503);
    // 409 first (the client should retry), then a timeout, then any other failure.
    if (failed < 0 || (s == 409 && status != 409) || (s == 504 && status == 503)) {
      failed = static_cast<int>(i);
      status = s;
    }
  }
  auto abort_all = [this, t](int failed_at, unsigned st) {
    {
      std::lock_guard lock(mu_);
      t->state = phase::aborting;
    }
    finish_async(t, [this, t, failed_at, st](bool all) {
      (st == 409 ? metrics_.conflict : st == 504 ? metrics_.timeout : metrics_.aborted).Increment();
      const auto& name = config_.participants[static_cast<std::size_t>(failed_at)].name;
      std::string what = st == 504 ? "transaction timeout (" + std::to_string(config_.timeout.count()) +
                                         " ms) waiting for participant " + name
                                   : "participant " + name + " voted no: " + reason_of(t->votes[failed_at]);
      conclude(t, all, {st, json_error("aborted: " + what, name)});
    });
  };
  if (failed >= 0) {
    abort_all(failed, status);
    return;
  }
  {
    std::lock_guard lock(mu_);
    t->state = phase::committing;
  }
  auto now = clock::now();
  // Observed only for committed transactions (here: every vote yes), so the phases add up to
  // the committed ones' duration.
  metrics_.phase_begin.Observe(seconds_since(t->started, t->phase_started));
  metrics_.phase_prepare.Observe(seconds_since(t->phase_started, now));
  t->phase_started = now;
  step_begun();
  log_.append(record_of(*t, 'C'), durability::synced, [this, t](std::error_code ec) {
    step_end end{this};
    if (ec) {
      // The outcome is unknown here: the record may be on disk all the same (written before a
      // failed fdatasync, or carried, fsync'd, into a new segment by a rotation, whose snapshot
      // holds the `commit` of every transaction past its votes). Aborting would contradict a
      // restart that finds it. So nothing is sent: the participants stay prepared (they hear
      // `pending` and wait), the key stays taken, and the log's failure fails /healthz, so the
      // gateway is restarted and its recovery decides from what the disk holds.
      log::error("gateway: the commit record could not be made durable; transaction in doubt until restart",
                 {{"tx", t->id}, {"error", ec.message()}});
      metrics_.in_doubt_outcome.Increment();
      {
        std::lock_guard lock(mu_);
        ++unlogged_commits_;
        metrics_.in_doubt.Set(static_cast<double>(retry_.size() + unlogged_commits_));
      }
      metrics_.duration.Observe(seconds_since(t->started, clock::now()));
      nlohmann::json j{{"error", "decision log: " + ec.message() +
                                     "; the outcome is decided when the gateway restarts (retry then)"},
                       {"tx", t->id}};
      conclude_answer(t, {503, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
      return;
    }
    {
      std::lock_guard lock(mu_);
      t->decided = true;
    }
    auto decided_at = clock::now();
    metrics_.phase_decision.Observe(seconds_since(t->phase_started, decided_at));
    t->phase_started = decided_at;
    maybe_crash(crash_point::where::after_decision);
    finish_async(t, [this, t](bool all) {
      metrics_.phase_commit.Observe(seconds_since(t->phase_started, clock::now()));
      metrics_.committed.Increment();
      nlohmann::json j{{"status", "committed"},
                       {"product", config_.product.name},
                       {"key", t->key},
                       {"version", t->version},
                       {"tx", t->id}};
      if (!all) j["pending"] = "some participants have not acknowledged yet; they will be retried";
      conclude(t, all, {200, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), t->version});
    });
  });
}

void coordinator::conclude(const std::shared_ptr<tx>& t, bool all_acked, update_result result) {
  if (all_acked) {
    release(*t);
  } else {
    std::lock_guard lock(mu_);
    retry_.push_back(t);
    metrics_.in_doubt.Set(static_cast<double>(retry_.size() + unlogged_commits_));
  }
  metrics_.duration.Observe(seconds_since(t->started, clock::now()));
  conclude_answer(t, std::move(result));
}

void coordinator::conclude_answer(const std::shared_ptr<tx>& t, update_result result) {
  auto done = std::move(t->done);
  t->done = nullptr;
  t->votes.clear();
  done(std::move(result));
}

void coordinator::finish_async(const std::shared_ptr<tx>& t, std::function<void(bool)> done) {
  bool commit = t->state == phase::committing;
  auto r = std::make_shared<round>();
  r->op = commit ? "commit" : "abort";
  r->deadline = clock::now() + options_.commit_call_timeout;
  // Armed for a test: one participant after the other, so the crash leaves the first nth
  // committed and the others prepared without news.
  r->one_by_one = commit && options_.crash.at == crash_point::where::during_commit;
  r->body = [this](std::size_t) { return product_body_; };
  r->on_reply = [this, t, commit](std::size_t i, link_reply reply) {
    if (reply.answered && reply.status == 200) {
      t->acked[i] = 1;
      if (commit && t->live) maybe_crash(crash_point::where::during_commit);
      return;
    }
    metrics_.participant_errors.at(config_.participants[i].name)->Increment();
    if (reply.answered && reply.status == 409) {
      // The participant holds the other outcome or never prepared: nothing to retry. Never
      // expected from a participant that keeps its records; said loudly.
      log::error("gateway: participant contradicts the decision", {{"participant", config_.participants[i].name},
                                                                   {"tx", t->id},
                                                                   {"op", commit ? "commit" : "abort"},
                                                                   {"answer", reply.body}});
      t->acked[i] = 1;
    }
  };
  r->on_done = [t, done = std::move(done)] {
    bool all = true;
    for (auto a : t->acked) all = all && a != 0;
    done(all);
  };
  start_round(t, r);
}

bool coordinator::finish(const std::shared_ptr<tx>& t) {
  std::promise<bool> p;
  auto f = p.get_future();
  finish_async(t, [&p](bool all) { p.set_value(all); });
  return f.get();
}

void coordinator::release(const tx& t) {
  {
    std::lock_guard lock(mu_);
    // Out of the active set before `end` is queued: a rotation snapshot taken in between leaves
    // it out, and the end record then follows in the new segment (harmless).
    active_.erase(t.id);
    auto k = keys_.find(t.key);
    if (k != keys_.end() && k->second == t.id) keys_.erase(k);
    auto now = options_.now ? options_.now() : clock::now();
    // An id not of new_tx_id's form (never, but a log could hold one) is not remembered: every
    // participant acknowledged the commit, so forgetting it early is safe (options).
    if (auto bits = bits_of(t.id); t.state == phase::committing && bits && committed_.insert(*bits).second) {
      committed_order_.emplace_back(now, *bits);
    }
    while (!committed_order_.empty() && (committed_order_.front().first + options_.remember_committed < now ||
                                         committed_order_.size() > options_.remember_committed_max)) {
      committed_.erase(committed_order_.front().second);
      committed_order_.pop_front();
    }
  }
  (void)log_.append(record_of(t, 'E'), durability::queued);
}

std::string coordinator::outcome(const std::string& id) const {
  std::lock_guard lock(mu_);
  if (auto it = active_.find(id); it != active_.end()) {
    switch (it->second->state) {
      case phase::preparing:
        return "pending";
      case phase::committing:
        // Not before the decision is on disk: a crash before the fsync aborts it at recovery.
        return it->second->decided ? "committed" : "pending";
      case phase::aborting:
        return "aborted";
    }
  }
  auto bits = bits_of(id);
  return bits && committed_.count(*bits) != 0 ? "committed" : "aborted";
}

std::size_t coordinator::in_doubt() const {
  std::lock_guard lock(mu_);
  return retry_.size() + unlogged_commits_;
}

void coordinator::recover(const std::vector<log_record>& records) {
  std::map<std::string, std::shared_ptr<tx>> found;
  std::uint64_t max_version = 0;
  for (const auto& r : records) {
    if (r.type == 'E') {
      found.erase(r.tx);
      continue;
    }
    auto& t = found[r.tx];
    if (!t) {
      t = std::make_shared<tx>();
      t->id = r.tx;
      t->key = r.key;
      t->deleted = r.deleted;
      t->version = r.version;
      t->value = r.value;
      t->acked.assign(links_.size(), 0);
    }
    if (r.type == 'C') {
      t->state = phase::committing;
      t->decided = true;
    }
    max_version = std::max(max_version, r.version);
  }
  if (max_version > last_version_.load()) last_version_ = max_version;
  int commits = 0, aborts = 0;
  for (auto& [id, t] : found) {
    if (t->state == phase::preparing) t->state = phase::aborting;  // undecided: presumed abort
    (t->state == phase::committing ? commits : aborts)++;
    std::lock_guard lock(mu_);
    keys_[t->key] = id;
    active_[id] = t;
  }
  std::vector<log_record> open;
  for (auto& [id, t] : found) {
    if (finish(t)) {
      release(*t);
    } else {
      std::lock_guard lock(mu_);
      retry_.push_back(t);
    }
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, t] : active_) {
      open.push_back(record_of(*t, 'B'));
      if (t->state == phase::committing) open.push_back(record_of(*t, 'C'));
    }
    metrics_.in_doubt.Set(static_cast<double>(retry_.size() + unlogged_commits_));
  }
  if (auto ec = log_.compact(open)) log::warn("gateway: decision log compaction failed", {{"error", ec.message()}});
  log::info("gateway: recovered", {{"recommitted", std::to_string(commits)},
                                   {"aborted", std::to_string(aborts)},
                                   {"stillRetrying", std::to_string(open.size())}});
  retry_thread_ = std::thread([this] { retry_loop(); });
  ready_ = true;
}

void coordinator::retry_loop() {
  std::unique_lock stop_lock(stop_mu_);
  while (!stopping_) {
    stop_cv_.wait_for(stop_lock, options_.retry_backoff, [this] { return stopping_; });
    if (stopping_) return;
    stop_lock.unlock();
    // The transactions stay in retry_ while they are retried, so in_doubt() never reads 0 for a
    // transaction some participant has not acknowledged yet.
    std::vector<std::shared_ptr<tx>> due;
    {
      std::lock_guard lock(mu_);
      due.assign(retry_.begin(), retry_.end());
    }
    std::vector<std::shared_ptr<tx>> done;
    for (auto& t : due) {
      {
        std::lock_guard lock(stop_mu_);
        if (stopping_) break;  // each finish() may wait for a call's deadline
      }
      if (finish(t)) {
        release(*t);
        done.push_back(t);
      }
    }
    {
      std::lock_guard lock(mu_);
      std::erase_if(retry_, [&](const auto& t) { return std::find(done.begin(), done.end(), t) != done.end(); });
      metrics_.in_doubt.Set(static_cast<double>(retry_.size() + unlogged_commits_));
    }
    stop_lock.lock();
  }
}

}  // namespace datashare::gateway
