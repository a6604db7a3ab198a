#include "gateway/coordinator.h"

#include <prometheus/text_serializer.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

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

link_reply http_link::call(const std::string& op, const std::string& tx, const std::string& body,
                           clock::time_point deadline) {
  link_reply out;
  sidecar::http::client_reply r;
  if (auto ec = client_.call(bhttp::verb::post, "/v1/tx/" + tx + "/" + op, body, deadline, r)) {
    out.timed_out = ec == std::errc::timed_out;
    out.error = "http://" + client_.where().host + ":" + client_.where().port + ": " + ec.message();
    return out;
  }
  out.answered = true;
  out.status = r.status;
  out.body = std::move(r.body);
  return out;
}

gateway_metrics::gateway_metrics(const std::vector<participant_spec>& participants)
    : registry(std::make_shared<prometheus::Registry>()),
      transactions(
          prometheus::BuildCounter()
              .Name("datashare_gateway_transactions_total")
              .Help("Transactions by outcome: committed, aborted, conflict (409), timeout (504), invalid (400)")
              .Register(*registry)),
      committed(transactions.Add({{"outcome", "committed"}})),
      aborted(transactions.Add({{"outcome", "aborted"}})),
      conflict(transactions.Add({{"outcome", "conflict"}})),
      invalid(transactions.Add({{"outcome", "invalid"}})),
      timeout(transactions.Add({{"outcome", "timeout"}})),
      duration(prometheus::BuildHistogram()
                   .Name("datashare_gateway_transaction_duration_seconds")
                   .Help("From the request to the answer, for transactions that reached the participants")
                   .Register(*registry)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                    0.5, 1, 2.5, 5, 10})),
      in_doubt(prometheus::BuildGauge()
                   .Name("datashare_gateway_in_doubt")
                   .Help("Decided transactions not yet acknowledged by every participant (retried)")
                   .Register(*registry)
                   .Add({})) {
  auto& errors = prometheus::BuildCounter()
                     .Name("datashare_gateway_participant_errors_total")
                     .Help("Calls to a participant that failed: no answer, or an answer other than the protocol's")
                     .Register(*registry);
  for (const auto& p : participants) participant_errors[p.name] = &errors.Add({{"participant", p.name}});
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
    auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), c.nth);
    if (ec != std::errc() || ptr != n.data() + n.size() || c.nth < 1) return std::nullopt;
  }
  return c;
}

coordinator::coordinator(gateway_config config, std::vector<std::unique_ptr<participant_link>> links, decision_log& log,
                         gateway_metrics& metrics, coordinator_options options)
    : config_(std::move(config)),
      links_(std::move(links)),
      log_(log),
      metrics_(metrics),
      options_(options),
      fan_out_(64 * (links_.size() > 1 ? links_.size() - 1 : 1)),
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
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (retry_thread_.joinable()) retry_thread_.join();
}

void coordinator::maybe_crash(crash_point::where w) {
  if (options_.crash.at != w) return;
  if (crash_count_.fetch_add(1) + 1 != options_.crash.nth) return;
  log::warn("gateway: crash point reached (DATASHARE_GATEWAY_CRASH_AT), killing myself", {});
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

std::string coordinator::new_tx_id() {
  std::lock_guard lock(mu_);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng_()),
                static_cast<unsigned long long>(rng_()));
  return buf;
}

std::uint64_t coordinator::next_version() {
  auto now = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
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
  auto it = j.find(config_.product.key);
  if (it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get_ref<const std::string&>() != key)
      return "field \"" + config_.product.key + "\" must equal the key in the path (\"" + key + "\")";
  } else if (kf != nullptr && kf->type == sidecar::config::field_type::string) {
    j[config_.product.key] = key;
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
  auto started = clock::now();
  std::string value;
  if (auto problem = check(key, body, value); !problem.empty()) {
    metrics_.invalid.Increment();
    return {400, json_error(problem)};
  }
  auto t = std::make_shared<tx>();
  t->id = new_tx_id();
  t->key = key;
  t->deleted = !body.has_value();
  t->value = std::move(value);
  t->acked.assign(links_.size(), 0);
  {
    std::lock_guard lock(mu_);
    auto [it, inserted] = keys_.emplace(key, t->id);
    if (!inserted) {
      metrics_.conflict.Increment();
      return {409, json_error("key \"" + key + "\" is being changed by transaction " + it->second + ": retry")};
    }
    t->version = next_version();
    active_[t->id] = t;
  }
  if (auto ec = log_.append(record_of(*t, 'B'), durability::written)) {
    release(*t);
    return {503, json_error("decision log: " + ec.message())};
  }

  // Phase 1: every participant at once.
  auto deadline = started + config_.timeout;
  std::vector<link_reply> votes(links_.size());
  auto prepare = [&](std::size_t i) {
    sidecar::participant::prepare_request pr{config_.product.name, t->key, t->deleted, t->value, t->version, {}};
    for (std::size_t j = 0; j < config_.participants.size(); ++j) {
      if (j != i) pr.peers.push_back(config_.participants[j].url);
    }
    votes[i] = links_[i]->call("prepare", t->id, sidecar::participant::encode_prepare(pr), deadline);
    if (votes[i].answered && votes[i].status == 200) maybe_crash(crash_point::where::after_prepare);
  };
  if (options_.crash.at == crash_point::where::after_prepare) {
    // Armed for a test: the first participant alone, so the crash leaves it prepared and the
    // others never asked.
    prepare(0);
    for (std::size_t i = 1; i < links_.size(); ++i) prepare(i);
  } else {
    run_all(fan_out_, links_.size(), prepare);
  }
  int failed = -1;
  unsigned status = 200;
  for (std::size_t i = 0; i < votes.size(); ++i) {
    const auto& v = votes[i];
    if (v.answered && v.status == 200) continue;
    if (!v.answered || v.status >= 500) metrics_.participant_errors.at(config_.participants[i].name)->Increment();
    unsigned s = v.answered && v.status == 409 ? 409 : (v.timed_out || clock::now() >= deadline ? 504 : 503);
    // 409 first (the client should retry), then a timeout, then any other failure.
    if (failed < 0 || (s == 409 && status != 409) || (s == 504 && status == 503)) {
      failed = static_cast<int>(i);
      status = s;
    }
  }

  if (failed < 0) {
    {
      std::lock_guard lock(mu_);
      t->state = phase::committing;
    }
    if (auto ec = log_.append(record_of(*t, 'C'), durability::synced)) {
      // Not decided after all: the log refuses writes, so nothing more is decided here.
      std::lock_guard lock(mu_);
      t->state = phase::aborting;
      failed = 0;
      status = 503;
      votes[0].answered = false;
      votes[0].error = "decision log: " + ec.message();
    }
  }
  if (failed < 0) {
    maybe_crash(crash_point::where::after_decision);
    bool all = finish(*t);
    if (all) {
      release(*t);
    } else {
      std::lock_guard lock(mu_);
      retry_.push_back(t);
      metrics_.in_doubt.Set(static_cast<double>(retry_.size()));
    }
    metrics_.committed.Increment();
    metrics_.duration.Observe(std::chrono::duration<double>(clock::now() - started).count());
    nlohmann::json j{{"status", "committed"},
                     {"product", config_.product.name},
                     {"key", t->key},
                     {"version", t->version},
                     {"tx", t->id}};
    if (!all) j["pending"] = "some participants have not acknowledged yet; they will be retried";
    return {200, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), t->version};
  }

  {
    std::lock_guard lock(mu_);
    t->state = phase::aborting;
  }
  if (finish(*t)) {
    release(*t);
  } else {
    std::lock_guard lock(mu_);
    retry_.push_back(t);
    metrics_.in_doubt.Set(static_cast<double>(retry_.size()));
  }
  (status == 409 ? metrics_.conflict : status == 504 ? metrics_.timeout : metrics_.aborted).Increment();
  metrics_.duration.Observe(std::chrono::duration<double>(clock::now() - started).count());
  const auto& name = config_.participants[static_cast<std::size_t>(failed)].name;
  std::string what = status == 504 ? "transaction timeout (" + std::to_string(config_.timeout.count()) +
                                         " ms) waiting for participant " + name
                                   : "participant " + name + " voted no: " + reason_of(votes[failed]);
  return {status, json_error("aborted: " + what, name)};
}

bool coordinator::finish(tx& t) {
  bool commit = t.state == phase::committing;
  const char* op = commit ? "commit" : "abort";
  auto deadline = clock::now() + options_.commit_call_timeout;
  std::atomic<bool> first_ack{true};
  auto send = [&](std::size_t i) {
    if (t.acked[i]) return;
    auto r = links_[i]->call(op, t.id, product_body_, deadline);
    if (r.answered && r.status == 200) {
      t.acked[i] = 1;
      if (commit && first_ack.exchange(false)) maybe_crash(crash_point::where::during_commit);
      return;
    }
    metrics_.participant_errors.at(config_.participants[i].name)->Increment();
    if (r.answered && r.status == 409) {
      // The participant holds the other outcome or never prepared: nothing to retry. Never
      // expected from a participant that keeps its records; said loudly.
      log::error("gateway: participant contradicts the decision",
                 {{"participant", config_.participants[i].name}, {"tx", t.id}, {"op", op}, {"answer", r.body}});
      t.acked[i] = 1;
    }
  };
  if (commit && options_.crash.at == crash_point::where::during_commit) {
    // Armed for a test: the first participant alone, so the crash leaves one committed and the
    // others prepared without news.
    for (std::size_t i = 0; i < links_.size(); ++i) send(i);
  } else {
    run_all(fan_out_, links_.size(), send);
  }
  for (auto a : t.acked) {
    if (a == 0) return false;
  }
  return true;
}

void coordinator::release(const tx& t) {
  {
    std::lock_guard lock(mu_);
    // Out of the active set before `end` is queued: a rotation snapshot taken in between leaves
    // it out, and the end record then follows in the new segment (harmless).
    active_.erase(t.id);
    auto k = keys_.find(t.key);
    if (k != keys_.end() && k->second == t.id) keys_.erase(k);
    auto now = clock::now();
    if (t.state == phase::committing) {
      committed_[t.id] = now;
      committed_order_.emplace_back(now, t.id);
    }
    while (!committed_order_.empty() && committed_order_.front().first + options_.remember_committed < now) {
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
        return "committed";
      case phase::aborting:
        return "aborted";
    }
  }
  return committed_.count(id) != 0 ? "committed" : "aborted";
}

std::size_t coordinator::in_doubt() const {
  std::lock_guard lock(mu_);
  return retry_.size();
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
    if (r.type == 'C') t->state = phase::committing;
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
    if (finish(*t)) {
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
    metrics_.in_doubt.Set(static_cast<double>(retry_.size()));
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
      if (finish(*t)) {
        release(*t);
        done.push_back(t);
      }
    }
    {
      std::lock_guard lock(mu_);
      std::erase_if(retry_, [&](const auto& t) { return std::find(done.begin(), done.end(), t) != done.end(); });
      metrics_.in_doubt.Set(static_cast<double>(retry_.size()));
    }
    stop_lock.lock();
  }
}

}  // namespace datashare::gateway
