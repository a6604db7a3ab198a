#include "sidecar/participant/participant.h"

#include <future>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/log.h"
#include "sidecar/event/schema.h"
#include "sidecar/replica/layout.h"

namespace datashare::sidecar::participant {
namespace {

constexpr char kTxPrefix = 't';

std::string tx_key(const std::string& tx) {
  return std::string(1, kTxPrefix) + tx;
}

constexpr char kGcPrefix = 'g';

// "g" <8 bytes big-endian wall µs> <id>: finished records in the order they may be dropped.
std::string gc_key(std::int64_t since_us, const std::string& tx) {
  std::string k(1, kGcPrefix);
  auto v = static_cast<std::uint64_t>(since_us < 0 ? 0 : since_us);
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return k + tx;
}

std::int64_t now_us() {
  return common::wall_now_us();
}

std::string state_body(tx_state s) {
  return nlohmann::json{{"state", to_string(s)}}.dump();
}

reply error_reply(unsigned status, const std::string& message, std::optional<tx_state> s = std::nullopt) {
  nlohmann::json j{{"error", message}};
  if (s) j["state"] = to_string(*s);
  return {status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

}  // namespace

std::string_view to_string(tx_state s) {
  switch (s) {
    case tx_state::preparing:
      return "preparing";
    case tx_state::prepared:
      return "prepared";
    case tx_state::committed:
      return "committed";
    case tx_state::aborted:
      return "aborted";
  }
  return "?";
}

// A record is binary (format 1), written on every state change of every transaction (three
// or four times per transaction at an owner): what JSON cost in encoding, parsing and allocations
// (about 3 % of the owner sidecar's CPU in P5) is spent on copies of bytes instead. Layout:
//   u8 format (1) | u8 state | u8 flags (1 deleted, 2 hadPrevious, 4 published)
//   | u64 version | i64 since µs | str key | str value | str previous | u32 peers | str peer...
// integers little-endian, each str a u32 length and its bytes. Records of the earlier releases
// are JSON objects (their first byte is '{'), still read; they are rewritten in format 1 by the
// next change of state.
namespace {

constexpr unsigned char kRecordFormat = 1;
enum : unsigned char { kDeleted = 1, kHadPrevious = 2, kPublished = 4 };

// Little-endian, sizeof(T) bytes.
template <class T>
void put_le(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u32(std::string& out, std::uint32_t v) {
  put_le(out, v);
}
void put_u64(std::string& out, std::uint64_t v) {
  put_le(out, v);
}

void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// Reads from the front of `in`, false when it is too short.
template <class T>
bool take_le(std::string_view& in, T& v) {
  if (in.size() < sizeof(T)) return false;
  v = 0;
  for (std::size_t i = sizeof(T); i-- > 0;) v = static_cast<T>((v << 8) | static_cast<unsigned char>(in[i]));
  in.remove_prefix(sizeof(T));
  return true;
}
bool take_u32(std::string_view& in, std::uint32_t& v) {
  return take_le(in, v);
}
bool take_u64(std::string_view& in, std::uint64_t& v) {
  return take_le(in, v);
}

bool take_str(std::string_view& in, std::string& s) {
  std::uint32_t n = 0;
  if (!take_u32(in, n) || in.size() < n) return false;
  s.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

std::optional<tx_state> state_from(unsigned char c) {
  switch (c) {
    case 0:
      return tx_state::preparing;
    case 1:
      return tx_state::prepared;
    case 2:
      return tx_state::committed;
    case 3:
      return tx_state::aborted;
    default:
      return std::nullopt;
  }
}

unsigned char state_byte(tx_state s) {
  switch (s) {
    case tx_state::preparing:
      return 0;
    case tx_state::prepared:
      return 1;
    case tx_state::committed:
      return 2;
    case tx_state::aborted:
      return 3;
  }
  return 0xFF;
}

std::optional<tx_record> decode_json_record(std::string_view bytes) {
  auto j = nlohmann::json::parse(bytes, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    tx_record r;
    auto s = j.at("state").get<std::string>();
    if (s == "preparing") {
      r.state = tx_state::preparing;
    } else if (s == "prepared") {
      r.state = tx_state::prepared;
    } else if (s == "committed") {
      r.state = tx_state::committed;
    } else if (s == "aborted") {
      r.state = tx_state::aborted;
    } else {
      return std::nullopt;
    }
    r.key = j.at("key").get<std::string>();
    r.deleted = j.at("deleted").get<bool>();
    r.version = j.at("version").get<std::uint64_t>();
    r.value = j.at("value").get<std::string>();
    r.had_previous = j.at("hadPrevious").get<bool>();
    r.previous = j.at("previous").get<std::string>();
    r.peers = j.at("peers").get<std::vector<std::string>>();
    r.since_us = j.at("since").get<std::int64_t>();
    if (auto it = j.find("published"); it != j.end() && it->is_boolean()) r.published = it->get<bool>();
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string encode_record(const tx_record& r) {
  std::string out;
  std::size_t peers = 0;
  for (const auto& p : r.peers) peers += 4 + p.size();
  out.reserve(3 + 8 + 8 + 12 + r.key.size() + r.value.size() + r.previous.size() + 4 + peers);
  out.push_back(static_cast<char>(kRecordFormat));
  out.push_back(static_cast<char>(state_byte(r.state)));
  out.push_back(static_cast<char>((r.deleted ? kDeleted : 0) | (r.had_previous ? kHadPrevious : 0) |
                                  (r.published ? kPublished : 0)));
  put_u64(out, r.version);
  put_u64(out, static_cast<std::uint64_t>(r.since_us));
  put_str(out, r.key);
  put_str(out, r.value);
  put_str(out, r.previous);
  put_u32(out, static_cast<std::uint32_t>(r.peers.size()));
  for (const auto& p : r.peers) put_str(out, p);
  return out;
}

std::optional<tx_record> decode_record(std::string_view bytes) {
  if (!bytes.empty() && bytes.front() == '{') return decode_json_record(bytes);
  if (bytes.size() < 3 || static_cast<unsigned char>(bytes[0]) != kRecordFormat) return std::nullopt;
  auto state = state_from(static_cast<unsigned char>(bytes[1]));
  auto flags = static_cast<unsigned char>(bytes[2]);
  if (!state || (flags & ~(kDeleted | kHadPrevious | kPublished)) != 0) return std::nullopt;
  std::string_view in = bytes.substr(3);
  tx_record r;
  r.state = *state;
  r.deleted = (flags & kDeleted) != 0;
  r.had_previous = (flags & kHadPrevious) != 0;
  r.published = (flags & kPublished) != 0;
  std::uint64_t since = 0;
  std::uint32_t peers = 0;
  if (!take_u64(in, r.version) || !take_u64(in, since) || !take_str(in, r.key) || !take_str(in, r.value) ||
      !take_str(in, r.previous) || !take_u32(in, peers) || peers > in.size() / 4) {
    return std::nullopt;
  }
  r.since_us = static_cast<std::int64_t>(since);
  r.peers.resize(peers);
  for (auto& p : r.peers) {
    if (!take_str(in, p)) return std::nullopt;
  }
  if (!in.empty()) return std::nullopt;  // trailing bytes: not a record of this format
  return r;
}

void owner_api::get_async(const std::string& key, callback done) {
  bool found = false;
  std::string value, error;
  auto ec = get(key, found, value, error);
  auto answer = std::move(done);
  answer(ec, found, std::move(value), std::move(error));
}

void owner_api::put_async(const std::string& key, const std::string& value, callback done) {
  std::string error;
  auto ec = put(key, value, error);
  auto answer = std::move(done);
  answer(ec, false, "", std::move(error));
}

void owner_api::del_async(const std::string& key, callback done) {
  std::string error;
  auto ec = del(key, error);
  auto answer = std::move(done);
  answer(ec, false, "", std::move(error));
}

// An owner's prepare between its asynchronous steps.
struct participant::owner_prepare {
  std::string tx;
  std::shared_ptr<tx_entry> e;
  tx_record r;
  std::function<void(reply)> done;
};

participant::participant(config::participate_spec spec, config::product_schema product,
                         std::vector<std::string> copy_fields, std::unique_ptr<store::kv> kv,
                         std::unique_ptr<owner_api> owner, publish_fn publish, std::unique_ptr<outcome_api> outcomes,
                         participant_options options)
    : spec_(std::move(spec)),
      product_(std::move(product)),
      copy_fields_(std::move(copy_fields)),
      kv_(std::move(kv)),
      owner_(std::move(owner)),
      publish_(std::move(publish)),
      outcomes_(std::move(outcomes)),
      options_(options) {
  if (options_.writer) {
    write_ = options_.writer;
  } else {
    writer_ = std::make_unique<store::group_writer>(*kv_);
    write_ = [w = writer_.get()](store::write_batch b, std::function<void(std::error_code)> done, bool sync) {
      w->write(std::move(b), std::move(done), sync);
    };
  }
}

participant::~participant() {
  stop();
}

std::error_code participant::start(std::string& error) {
  // Every record: unfinished ones lock their key again and are looked at by the background
  // thread at once (a `preparing` one is compensated there); finished ones wait for retention.
  std::string from(1, kTxPrefix), to(1, kTxPrefix + 1);
  std::vector<store::entry> page;
  for (;;) {
    page.clear();
    if (auto ec = kv_->scan(from, to, 1000, page)) {
      error = "participant store of " + spec_.product + ": " + ec.message();
      return ec;
    }
    for (const auto& [k, v] : page) {
      std::string tx = k.substr(1);
      auto r = decode_record(v);
      if (!r) {
        error = "participant store of " + spec_.product + ": unreadable record of transaction " + tx;
        return store::make_error_code(store::errc::corruption);
      }
      std::lock_guard lock(mu_);
      if (r->state == tx_state::prepared || r->state == tx_state::preparing) {
        locks_[r->key] = tx;
        held_since_us_[tx] = r->since_us;
        open_[tx] = {std::chrono::steady_clock::now() +
                     (r->state == tx_state::preparing ? std::chrono::milliseconds(0) : spec_.lock_timeout)};
      } else if (r->state == tx_state::committed && !r->published) {
        // Committed, its publish not known to be in the outbox: published again at once.
        locks_[r->key] = tx;
        held_since_us_[tx] = r->since_us;
        open_[tx] = {std::chrono::steady_clock::now()};
      }
    }
    if (page.size() < 1000) break;
    from = page.back().first + '\0';
  }
  if (!options_.background) return {};
  worker_ = std::thread([this] {
    std::unique_lock lock(stop_mu_);
    while (!stopping_) {
      lock.unlock();
      resolve_overdue();
      lock.lock();
      stop_cv_.wait_for(lock, options_.tick, [this] { return stopping_; });
    }
  });
  return {};
}

void participant::stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  {
    std::unique_lock lock(flight_mu_);
    if (!flight_cv_.wait_for(lock, std::chrono::seconds(30), [this] { return in_flight_ == 0; })) {
      log::error("participant: stopping with owner commits still in flight", {{"product", spec_.product}});
    }
  }
  if (options_.writer && !writer_drained_) {
    // The writer is the publisher's, which outlives this participant: every callback of a record
    // queued there has run once this empty one's has (one queue, in order).
    writer_drained_ = true;
    std::promise<void> drained;
    auto f = drained.get_future();
    write_(
        {}, [&drained](std::error_code) { drained.set_value(); }, false);
    f.wait();
  }
}

std::size_t participant::locked_keys() const {
  std::lock_guard lock(mu_);
  return locks_.size();
}

std::int64_t participant::held_ms(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = locks_.find(key);
  if (it == locks_.end()) return 0;
  auto since = held_since_us_.find(it->second);
  if (since == held_since_us_.end()) return 0;
  return std::max<std::int64_t>(1, (now_us() - since->second) / 1000);  // held: never "current"
}

std::string participant::holder_of(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = locks_.find(key);
  return it == locks_.end() ? std::string() : it->second;
}

std::shared_ptr<participant::tx_entry> participant::entry(const std::string& tx) {
  std::lock_guard lock(mu_);
  auto& slot = live_[tx];
  auto e = slot.lock();
  if (!e) {
    e = std::make_shared<tx_entry>();
    slot = e;
  }
  return e;
}

void participant::when_free(const std::shared_ptr<tx_entry>& e, std::function<void(std::unique_lock<std::mutex>&)> fn) {
  std::unique_lock lock(e->mu);
  if (e->busy) {
    e->waiting.push_back([this, e, fn = std::move(fn)]() mutable { when_free(e, std::move(fn)); });
    return;
  }
  fn(lock);
}

void participant::release(const std::shared_ptr<tx_entry>& e) {
  std::unique_lock lock(e->mu);
  e->busy = false;
  // A waiting call may start an asynchronous call of its own (busy again): the rest wait for it,
  // and its release runs them.
  while (!e->busy && !e->waiting.empty()) {
    auto next = std::move(e->waiting.front());
    e->waiting.pop_front();
    lock.unlock();
    next();
    lock.lock();
  }
}

void participant::queue_write(const std::shared_ptr<tx_entry>& e, store::write_batch b, bool sync,
                              std::function<void(std::error_code)> then) {
  ++e->writes_queued;
  write_(
      std::move(b),
      [e, then = std::move(then)](std::error_code ec) {
        {
          std::lock_guard lock(e->mu);
          --e->writes_queued;
        }
        if (then) then(ec);
      },
      sync);
}

void participant::write_records(store::write_batch b, std::function<void(std::error_code)> done, bool sync) {
  write_(std::move(b), std::move(done), sync);
}

void participant::begin_flight() {
  std::lock_guard lock(flight_mu_);
  ++in_flight_;
}

void participant::end_flight() {
  std::lock_guard lock(flight_mu_);
  if (--in_flight_ == 0) flight_cv_.notify_all();
}

void participant::load(const std::string& tx, tx_entry& e) {
  if (e.loaded) return;
  std::string bytes;
  auto ec = kv_->get(tx_key(tx), bytes);
  if (ec == store::errc::not_found) {
    e.rec.reset();
    e.loaded = true;
  } else if (!ec) {
    e.rec = decode_record(bytes);
    e.loaded = e.rec.has_value();
  }
  // A read error leaves it unloaded: the caller answers 503 and the coordinator tries again.
}

std::error_code participant::persist(const std::string& tx, const tx_record& r, bool sync, store::write_batch* batch,
                                     tx_entry* e) {
  store::write_batch own;
  store::write_batch& b = batch != nullptr ? *batch : own;
  add_record(b, tx, r);
  if (e != nullptr && e->writes_queued > 0) {
    write_(
        std::move(b), [](std::error_code) {}, true);
    return {};
  }
  return kv_->write(b, sync);
}

void participant::add_record(store::write_batch& b, const std::string& tx, const tx_record& r) const {
  b.put(tx_key(tx), encode_record(r));
  if (r.state == tx_state::committed || r.state == tx_state::aborted) b.put(gc_key(r.since_us, tx), "");
}

bool participant::voted_no(const std::string& tx) const {
  std::lock_guard lock(mu_);
  return voted_no_.count(tx) != 0;
}

void participant::finished(const std::string& tx, const tx_record& r) {
  std::lock_guard lock(mu_);
  voted_no_.erase(tx);
  auto l = locks_.find(r.key);
  if (l != locks_.end() && l->second == tx) {
    locks_.erase(l);
    released_.fetch_add(1, std::memory_order_release);
  }
  held_since_us_.erase(tx);
  open_.erase(tx);
}

reply participant::vote_no(unsigned status, const std::string& reason) {
  return {status, nlohmann::json{{"vote", "no"}, {"reason", reason}}.dump(-1, ' ', false,
                                                                          nlohmann::json::error_handler_t::replace)};
}

std::string participant::project(const std::string& value) const {
  auto j = nlohmann::json::parse(value);
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : copy_fields_) {
    auto it = j.find(f);
    if (it != j.end()) out[f] = *it;
  }
  return out.dump();
}

reply participant::prepare(const std::string& tx, const prepare_request& req) {
  std::promise<reply> p;
  auto f = p.get_future();
  prepare_async(tx, req, [&p](reply r) { p.set_value(std::move(r)); });
  return f.get();
}

void participant::prepare_async(const std::string& tx, const prepare_request& req, std::function<void(reply)> done) {
  if (req.product != spec_.product) {
    done(vote_no(400, "this participant serves product " + spec_.product));
    return;
  }
  if (!event::is_valid_utf8(req.key)) {
    done(vote_no(400, "the key is not valid UTF-8"));
    return;
  }
  std::string staged;
  if (!req.deleted) {
    auto j = nlohmann::json::parse(req.value, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      done(vote_no(400, "value: a JSON object is required"));
      return;
    }
    if (auto problem = event::check_entity(j, product_, event::unknown_fields::reject); !problem.empty()) {
      done(vote_no(400, problem));
      return;
    }
    staged = spec_.role == config::participant_role::copy ? project(req.value) : req.value;
  }
  auto e = entry(tx);
  when_free(e, [this, tx, req, staged = std::move(staged), e,
                done = std::move(done)](std::unique_lock<std::mutex>& lock) mutable {
    if (auto r = prepare_locked(tx, req, std::move(staged), e, lock, done)) {
      if (lock.owns_lock()) lock.unlock();
      done(std::move(*r));
    }
  });
}

std::optional<reply> participant::prepare_locked(const std::string& tx, const prepare_request& req, std::string staged,
                                                 const std::shared_ptr<tx_entry>& e, std::unique_lock<std::mutex>& lock,
                                                 std::function<void(reply)>& done) {
  load(tx, *e);
  if (!e->loaded) return vote_no(503, "participant store unreadable");
  if (e->rec) {
    // A repeated prepare gets the same answer.
    switch (e->rec->state) {
      case tx_state::prepared:
      case tx_state::committed: {
        // After the group holding the first answer's record: never a yes before it is durable.
        reply yes{200, R"({"vote":"yes","state":")" + std::string(to_string(e->rec->state)) + "\"}"};
        write_(
            {},
            [yes, done = std::move(done)](std::error_code ec) {
              done(ec ? reply{503, R"({"vote":"no","reason":"participant store: sync failed"})"} : yes);
            },
            true);
        return std::nullopt;
      }
      case tx_state::aborted:
        return vote_no(409, "transaction " + tx + " is already aborted here");
      case tx_state::preparing:
        return vote_no(503, "transaction " + tx + " is being compensated after a failed prepare");
    }
  }
  if (spec_.role == config::participant_role::owner && options_.version_floor) {
    // The outbox never renumbers a transaction's version; below the key's last one it refuses
    // the publish, so say no now, while every participant can still abort.
    if (auto floor = options_.version_floor(req.key); req.version < floor) {
      (void)do_abort(tx, *e);
      return vote_no(409, "version " + std::to_string(req.version) + " of key \"" + req.key +
                              "\" is below the version it was last published with (" + std::to_string(floor) + ")");
    }
  }
  std::string holder;
  {
    std::lock_guard locks(mu_);
    auto [it, inserted] = locks_.emplace(req.key, tx);
    if (!inserted && it->second != tx) holder = it->second;
    if (inserted) held_since_us_[tx] = now_us();
  }
  if (!holder.empty()) {
    // A no vote is final: remembered as aborted, so a repeated prepare gets the same answer.
    (void)do_abort(tx, *e);
    return vote_no(409, "key \"" + req.key + "\" is held by transaction " + holder);
  }
  tx_record r;
  r.key = req.key;
  r.deleted = req.deleted;
  r.version = req.version;
  r.value = std::move(staged);
  r.peers = req.peers;
  if (spec_.role == config::participant_role::owner) {
    // A chain of callbacks, no thread waiting: the owner's GET (the previous value, kept for
    // compensation), the `preparing` record through the group writer (fsync shared with the
    // other transactions' records), the PUT or DELETE, the `prepared` record (queued, not
    // synced) and the yes vote. The transaction is `busy` meanwhile: its other calls wait.
    e->busy = true;
    begin_flight();
    auto c = std::make_shared<owner_prepare>();
    c->tx = tx;
    c->e = e;
    c->r = std::move(r);
    c->done = std::move(done);
    lock.unlock();
    owner_->get_async(c->r.key, [this, c](std::error_code ec, bool found, std::string value, const std::string& error) {
      owner_got(c, ec, found, std::move(value), error);
    });
    return std::nullopt;
  }
  r.state = tx_state::prepared;
  r.since_us = now_us();
  store::write_batch batch;
  batch.put(tx_key(tx), encode_record(r));
  // In memory at once (a concurrent abort sees it prepared and aborts it); the yes goes out once
  // the group holding it is on disk.
  std::optional<tx_record> before = e->rec;
  e->rec = r;
  ++e->writes_queued;
  {
    std::lock_guard locks(mu_);
    open_[tx] = {std::chrono::steady_clock::now() + spec_.lock_timeout};
  }
  write_records(std::move(batch), [this, tx, e, before = std::move(before), version = r.version,
                                   done = std::move(done)](std::error_code ec) mutable {
    {
      std::lock_guard entry_lock(e->mu);
      --e->writes_queued;
    }
    if (!ec) {
      done({200, R"({"vote":"yes","state":"prepared"})"});
      return;
    }
    {
      std::lock_guard entry_lock(e->mu);
      if (e->rec && e->rec->state == tx_state::prepared && e->rec->version == version) {
        std::string key = e->rec->key;
        // A no vote is final: a repeated prepare finds it aborted (in memory only: the store
        // just failed, and one without the record aborts too, presumed abort).
        tx_record a;
        a.state = tx_state::aborted;
        a.version = version;
        a.since_us = now_us();
        e->rec = before.has_value() ? before : std::optional<tx_record>(a);
        std::lock_guard locks(mu_);
        auto it = locks_.find(key);
        if (it != locks_.end() && it->second == tx) locks_.erase(it);
        held_since_us_.erase(tx);
        open_.erase(tx);
      }
    }
    done(vote_no(503, "participant store: " + ec.message()));
  });
  return std::nullopt;
}

void participant::owner_got(const std::shared_ptr<owner_prepare>& c, std::error_code ec, bool found, std::string value,
                            const std::string& error) {
  auto unlock_key = [&] {
    std::lock_guard lock(mu_);
    auto it = locks_.find(c->r.key);
    if (it != locks_.end() && it->second == c->tx) locks_.erase(it);
    held_since_us_.erase(c->tx);
  };
  if (ec) {
    unlock_key();
    owner_no_vote(c, vote_no(503, "reading the owner's current value: " + error));
    return;
  }
  c->r.had_previous = found;
  c->r.previous = std::move(value);
  c->r.state = tx_state::preparing;
  c->r.since_us = now_us();
  store::write_batch b;
  add_record(b, c->tx, c->r);
  std::lock_guard lock(c->e->mu);
  queue_write(c->e, std::move(b), true, [this, c](std::error_code wec) { owner_preparing_written(c, wec); });
}

void participant::owner_preparing_written(const std::shared_ptr<owner_prepare>& c, std::error_code ec) {
  if (ec) {
    {
      std::lock_guard lock(mu_);
      auto it = locks_.find(c->r.key);
      if (it != locks_.end() && it->second == c->tx) locks_.erase(it);
      held_since_us_.erase(c->tx);
    }
    owner_no_vote(c, vote_no(503, "participant store: " + ec.message()));
    return;
  }
  {
    std::lock_guard lock(c->e->mu);
    c->e->rec = c->r;
  }
  if (options_.version_floor) {
    // Again, now that the `preparing` record is written: a direct write of the owner's app that
    // found the key free (publisher::set_key_holder) just before this prepare took it was in an
    // earlier group of the same writer, so its floor is in the store by now. Nothing is applied
    // to the owner yet: no compensation, the key is free again.
    // The `aborted` record is synced: a `preparing` one found after a crash would put the
    // previous value back over the direct write.
    if (auto floor = options_.version_floor(c->r.key); c->r.version < floor) {
      auto no = vote_no(409, "version " + std::to_string(c->r.version) + " of key \"" + c->r.key +
                                 "\" is below the version it was last published with (" + std::to_string(floor) +
                                 "): a direct write of the owner came first");
      c->r.state = tx_state::aborted;
      c->r.since_us = now_us();
      store::write_batch b;
      add_record(b, c->tx, c->r);
      std::lock_guard lock(c->e->mu);
      c->e->rec = c->r;
      queue_write(c->e, std::move(b), true, [this, c, no = std::move(no)](std::error_code) {
        finished(c->tx, c->r);
        end_owner_prepare(c, no);
      });
      return;
    }
  }
  {
    std::lock_guard lock(mu_);
    open_[c->tx] = {std::chrono::steady_clock::now() + spec_.lock_timeout};
  }
  // From the writer's thread: the client takes the call to an I/O thread (never waits here).
  auto applied = [this, c](std::error_code aec, bool, const std::string&, const std::string& error) {
    owner_applied(c, aec, error);
  };
  if (c->r.deleted) {
    owner_->del_async(c->r.key, std::move(applied));
  } else {
    owner_->put_async(c->r.key, c->r.value, std::move(applied));
  }
}

void participant::owner_applied(const std::shared_ptr<owner_prepare>& c, std::error_code ec, const std::string& error) {
  if (ec) {
    owner_refuse(c, "the owner refused the change: " + error);
    return;
  }
  // The `preparing` record on disk already holds the change and the previous value, so the
  // `prepared` one needs no fsync of its own (lost with the machine, the restarted record is
  // `preparing` again, which asks for the outcome like a prepared one and applies the change
  // again when told committed): it rides in the writer's next group, and the yes goes out now.
  // Should its write fail, the store holds `preparing`, as after a crash.
  owner_record_unsynced(c, tx_state::prepared, [tx = c->tx](std::error_code wec) {
    if (wec)
      log::error("participant: the prepared record could not be written", {{"tx", tx}, {"error", wec.message()}});
  });
  {
    std::lock_guard lock(mu_);
    open_[c->tx] = {std::chrono::steady_clock::now() + spec_.lock_timeout};
  }
  end_owner_prepare(c, reply{200, R"({"vote":"yes","state":"prepared"})"});
}

void participant::owner_record_unsynced(const std::shared_ptr<owner_prepare>& c, tx_state state,
                                        std::function<void(std::error_code)> then) {
  c->r.state = state;
  c->r.since_us = now_us();
  std::lock_guard lock(c->e->mu);
  c->e->rec = c->r;
  store::write_batch b;
  add_record(b, c->tx, c->r);
  queue_write(c->e, std::move(b), false, std::move(then));
}

void participant::owner_refuse(const std::shared_ptr<owner_prepare>& c, const std::string& why) {
  // The owner may or may not have applied it: the previous value goes back either way.
  compensate_async(c->r, [this, c, why](const std::string& failure) {
    if (!failure.empty()) {
      // Stays `preparing`: the background thread keeps compensating; the key stays locked.
      {
        std::lock_guard lock(mu_);
        voted_no_.insert(c->tx);
        open_[c->tx] = {std::chrono::steady_clock::now()};  // the background thread retries at its next tick
      }
      end_owner_prepare(c, vote_no(503, why + "; compensation pending: " + failure));
      return;
    }
    owner_record_unsynced(c, tx_state::aborted, nullptr);
    finished(c->tx, c->r);
    end_owner_prepare(c, vote_no(503, why));
  });
}

void participant::owner_no_vote(const std::shared_ptr<owner_prepare>& c, reply no) {
  // A no vote is final, also when it wrote nothing (the owner's GET or the `preparing` record
  // failed): without a record, a repeated prepare would start afresh and could vote yes, a
  // different answer to the same call. Recorded as an abort that arrived before its prepare is
  // (no key, nothing held; dropped after the retention).
  tx_record a;
  a.state = tx_state::aborted;
  a.version = c->r.version;
  a.since_us = now_us();
  {
    std::lock_guard lock(c->e->mu);
    c->e->rec = a;
    store::write_batch b;
    add_record(b, c->tx, a);
    queue_write(c->e, std::move(b), false, nullptr);
  }
  end_owner_prepare(c, std::move(no));
}

void participant::end_owner_prepare(const std::shared_ptr<owner_prepare>& c, reply r) {
  auto done = std::move(c->done);
  done(std::move(r));
  release(c->e);
  end_flight();  // last: stop() may return (and the participant go) once no call is in flight
}

void participant::compensate_async(const tx_record& r, std::function<void(std::string failure)> done) {
  auto back = [done = std::move(done)](std::error_code ec, bool, const std::string&, const std::string& error) {
    done(ec ? (error.empty() ? ec.message() : error) : std::string());
  };
  if (r.had_previous) {
    owner_->put_async(r.key, r.previous, std::move(back));
  } else {
    owner_->del_async(r.key, std::move(back));
  }
}

std::string participant::compensate(const tx_record& r) {
  std::string error;
  auto ec = r.had_previous ? owner_->put(r.key, r.previous, error) : owner_->del(r.key, error);
  if (ec) return error.empty() ? ec.message() : error;
  return "";
}

void participant::commit_async(const std::string& tx, std::function<void(reply)> done) {
  auto e = entry(tx);
  when_free(e, [this, tx, e, done = std::move(done)](std::unique_lock<std::mutex>& lock) mutable {
    load(tx, *e);
    auto r = e->loaded ? do_commit(tx, e, &done) : error_reply(503, "participant store unreadable");
    lock.unlock();
    if (r) done(std::move(*r));
  });
}

reply participant::commit(const std::string& tx) {
  std::promise<reply> p;
  auto f = p.get_future();
  commit_async(tx, [&p](reply r) { p.set_value(std::move(r)); });
  return f.get();
}

std::optional<reply> participant::do_commit(const std::string& tx, const std::shared_ptr<tx_entry>& ep,
                                            std::function<void(reply)>* done) {
  tx_entry& e = *ep;
  if (!e.rec) return error_reply(409, "transaction " + tx + " was never prepared here");
  tx_record r = *e.rec;
  switch (r.state) {
    case tx_state::committed:
      if (e.committing) return error_reply(503, "transaction " + tx + " is being committed here: try again");
      if (!r.published && e.writes_queued > 0) {
        // Its publish below waits with the entry's mutex held; a record of it still queued in
        // the writer (its callback takes that mutex) would make it wait forever with the
        // publisher's writer. The coordinator retries.
        return error_reply(503, "transaction " + tx + " is being written here: try again");
      }
      if (!r.published) {
        // Owner: committed on disk, the publish refused or lost with a crash: published again
        // (same version) before the acknowledgement. The mark is not synced: lost, the value is
        // published once more, which its version makes harmless.
        std::string error;
        if (auto ec = publish_blocking(r, error)) return error_reply(503, "publishing: " + error);
        r.published = true;
        // Finished now: kept for the retention from here. With the commit's time, a record
        // committed longer ago than the retention (a sidecar down that long, a store of an
        // earlier release) was dropped at the next round, right after its publish, and the
        // coordinator's repeated call found no record of it.
        r.since_us = now_us();
        (void)persist(tx, r, false, nullptr, &e);
        e.rec = r;
        finished(tx, r);
        return reply{200, state_body(r.state)};
      }
      if (done != nullptr) {
        // A repeated commit: after the group holding the first one's record (it may still be
        // queued), never an acknowledgement before that record is durable.
        write_records({}, [body = state_body(r.state), done = std::move(*done)](std::error_code ec) {
          done(ec ? error_reply(503, "participant store: sync failed") : reply{200, body});
        });
        return std::nullopt;
      }
      return reply{200, state_body(r.state)};
    case tx_state::aborted:
      return error_reply(409, "transaction " + tx + " is aborted here", r.state);
    case tx_state::preparing:
      if (spec_.role != config::participant_role::owner || voted_no(tx))
        return error_reply(409, "transaction " + tx + " is preparing here", tx_state::aborted);
      {
        // Found `preparing` after a restart (the unsynced `prepared` record was lost with the
        // machine), and the coordinator decided commit, so this participant had voted yes: the
        // owner may or may not hold the change, so it is applied again (idempotent).
        std::string error;
        auto ec = r.deleted ? owner_->del(r.key, error) : owner_->put(r.key, r.value, error);
        if (ec) return error_reply(503, "applying the change to the owner again: " + error);
      }
      break;
    case tx_state::prepared:
      break;
  }
  r.state = tx_state::committed;
  r.since_us = now_us();
  store::write_batch batch;
  if (spec_.role == config::participant_role::owner) {
    if (done != nullptr) {
      // The record with the outbox entry, one fsync for both. Behind the records of this
      // transaction still queued (the `prepared` one): in the same queue when the publisher's
      // writer writes them too; otherwise only once none is queued in the group writer (the disk
      // could end with that one after the `committed` one), else the path of two writers.
      if (options_.records_in_outbox && (options_.writer || e.writes_queued == 0))
        return commit_owner_with_outbox(tx, ep, std::move(r), *done);
      commit_owner_async(tx, ep, std::move(r), std::move(*done));
      return std::nullopt;
    }
    std::string error;
    if (auto ec = publish_blocking(r, error)) return error_reply(503, "publishing: " + error);
  } else {
    batch.put(replica::data_key(r.key), replica::encode_record(r.version, r.since_us, r.deleted, r.value));
  }
  if (done == nullptr) {
    // The background thread (an overdue transaction told committed): answers no one, synced here.
    if (auto ec = persist(tx, r, true, &batch, &e)) return error_reply(503, "participant store: " + ec.message());
    e.rec = r;
    finished(tx, r);
    return reply{200, state_body(r.state)};
  }
  // fsync'd before the acknowledgement, group-committed with the other commits and prepares.
  // Held committed in memory at once; the acknowledgement waits for the disk. The key stays held
  // until then: a copy's value is in its store only once the group is written, and a read of the
  // copy between the two would serve the previous value as current (staleness 0: "nothing holds
  // the key") though the transaction is committed elsewhere (until 2026-12-04 the key was freed
  // here). The coordinator holds the key until this commit is acknowledged anyway, so no next
  // transaction's prepare finds it held.
  add_record(batch, tx, r);
  e.rec = r;
  ++e.writes_queued;
  {
    std::lock_guard lock(mu_);
    open_.erase(tx);  // decided: nothing to ask the coordinator
  }
  write_records(std::move(batch), [this, tx, ep, r, done = std::move(*done)](std::error_code ec) {
    {
      std::lock_guard entry_lock(ep->mu);
      --ep->writes_queued;
      if (ec) {
        // Not on disk: what the store holds (prepared) is read again by the next call, and the
        // key stays held, with the old value served as possibly stale; the coordinator retries
        // the commit.
        ep->loaded = false;
        ep->rec.reset();
        std::lock_guard lock(mu_);
        open_[tx] = {std::chrono::steady_clock::now() + spec_.lock_timeout};
      } else {
        finished(tx, r);  // the value is in the store: the key is free, its reads current
      }
    }
    if (ec) {
      log::error("participant: the committed record could not be written", {{"tx", tx}, {"error", ec.message()}});
      done(error_reply(503, "participant store: " + ec.message()));
      return;
    }
    done({200, state_body(tx_state::committed)});
  });
  return std::nullopt;
}

std::error_code participant::publish_blocking(const tx_record& r, std::string& error) {
  std::promise<std::pair<std::error_code, std::string>> p;
  auto f = p.get_future();
  std::optional<std::string> value;
  if (!r.deleted) value = r.value;
  publish_(r.key, value, r.version, {}, [&p](std::error_code ec, std::string err) {
    p.set_value({ec, std::move(err)});
  });
  auto [ec, err] = f.get();
  error = std::move(err);
  return ec;
}

std::optional<reply> participant::commit_owner_with_outbox(const std::string& tx, const std::shared_ptr<tx_entry>& ep,
                                                           tx_record r, std::function<void(reply)>& done) {
  // The `committed` record (already `published`) rides in the publisher's batch with the outbox
  // entry: both durable at one fsync, or neither written. The transaction is busy until then, so
  // a repeated commit waits for this one and gets its answer.
  struct call {
    std::thread::id caller = std::this_thread::get_id();
    std::atomic<bool> returned{false};
    bool answered_inside = false;  // the callback ran inside publish_ (on this thread, entry locked)
    std::error_code ec;
    std::string error;
    std::function<void(reply)> done;
  };
  auto c = std::make_shared<call>();
  c->done = std::move(done);
  r.published = true;
  store::write_batch with;
  add_record(with, tx, r);
  ep->rec = r;
  ep->committing = true;
  ep->busy = true;
  begin_flight();
  std::optional<std::string> value;
  if (!r.deleted) value = r.value;
  publish_(r.key, value, r.version, std::move(with), [this, tx, ep, c, r](std::error_code ec, std::string error) {
    if (!c->returned.load() && std::this_thread::get_id() == c->caller) {
      // Inside the call (a refusal at once): the caller holds the entry and finishes below.
      c->answered_inside = true;
      c->ec = ec;
      c->error = std::move(error);
      return;
    }
    reply answer;
    {
      std::lock_guard entry_lock(ep->mu);
      answer = owner_committed_with_outbox(tx, *ep, r, ec, error);
    }
    c->done(std::move(answer));
    release(ep);
    end_flight();  // last: stop() may return (and the participant go) once no call is in flight
  });
  c->returned = true;
  if (!c->answered_inside) return std::nullopt;
  ep->busy = false;  // nothing waits: the entry's mutex was held throughout
  end_flight();
  done = std::move(c->done);
  return owner_committed_with_outbox(tx, *ep, r, c->ec, c->error);
}

reply participant::owner_committed_with_outbox(const std::string& tx, tx_entry& e, const tx_record& r,
                                               std::error_code ec, const std::string& error) {
  e.committing = false;
  if (ec) {
    // Refused, or the outbox's write failed: neither the entry nor the record is on disk. The
    // store holds `prepared`, read again by the next call; the key stays locked; the coordinator
    // retries the commit.
    e.loaded = false;
    e.rec.reset();
    return error_reply(503, "publishing: " + error);
  }
  finished(tx, r);
  return {200, state_body(tx_state::committed)};
}

void participant::commit_owner_async(const std::string& tx, const std::shared_ptr<tx_entry>& ep, tx_record r,
                                     std::function<void(reply)> done) {
  // The publish (the outbox's fsync) and the `committed` record (the group writer's fsync) at
  // once: one fsync's wait on the commit's path instead of two. The record says `published`
  // false until both are durable, so a crash in between publishes again at start.
  struct join {
    std::atomic<int> left{2};
    std::error_code store_ec, publish_ec;
    std::string publish_error;
    std::function<void(reply)> done;
  };
  auto j = std::make_shared<join>();
  j->done = std::move(done);
  begin_flight();
  r.published = false;
  store::write_batch batch;
  add_record(batch, tx, r);
  ep->rec = r;
  ep->committing = true;
  // Busy until both are durable: a repeated commit (or any call of this transaction) waits for
  // this one and gets its answer, instead of a 503 to try again.
  ep->busy = true;
  ++ep->writes_queued;
  auto both_done = [this, tx, ep, j] {
    reply answer;
    {
      std::lock_guard entry_lock(ep->mu);
      --ep->writes_queued;
      ep->committing = false;
      if (j->store_ec) {
        // Not on disk: what the store holds (prepared) is read again by the next call, the key
        // stays locked; the coordinator retries the commit (published once more, same version).
        ep->loaded = false;
        ep->rec.reset();
        std::lock_guard lock(mu_);
        open_[tx] = {std::chrono::steady_clock::now() + spec_.lock_timeout};
        answer = error_reply(503, "participant store: " + j->store_ec.message());
      } else if (j->publish_ec) {
        // Committed on disk, not in the outbox: the key stays locked; the retried commit or the
        // background thread publishes again.
        std::lock_guard lock(mu_);
        open_[tx] = {std::chrono::steady_clock::now() + options_.ask_backoff};
        answer = error_reply(503, "publishing: " + j->publish_error);
      } else {
        tx_record fin = *ep->rec;
        fin.published = true;
        // The mark needs no fsync (lost, the value is published once more, same version): it
        // rides in the writer's next group instead of a store write of its own.
        store::write_batch mark;
        add_record(mark, tx, fin);
        queue_write(ep, std::move(mark), false, nullptr);
        ep->rec = fin;
        finished(tx, fin);
        answer = {200, state_body(tx_state::committed)};
      }
    }
    if (j->store_ec) {
      log::error("participant: the committed record could not be written",
                 {{"tx", tx}, {"error", j->store_ec.message()}});
    }
    j->done(std::move(answer));
    release(ep);
    end_flight();  // last: stop() may return (and the participant go) once no call is in flight
  };
  // The publish first: its callback may run inside the call (the caller holds the entry), and
  // then it is not the last one; the record's always runs on the writer's thread.
  std::optional<std::string> value;
  if (!r.deleted) value = r.value;
  publish_(r.key, value, r.version, {}, [j, both_done](std::error_code ec, std::string error) {
    j->publish_ec = ec;
    j->publish_error = std::move(error);
    if (j->left.fetch_sub(1) == 1) both_done();
  });
  write_records(std::move(batch), [j, both_done](std::error_code ec) {
    j->store_ec = ec;
    if (j->left.fetch_sub(1) == 1) both_done();
  });
}

reply participant::abort(const std::string& tx) {
  std::promise<reply> p;
  auto f = p.get_future();
  abort_async(tx, [&p](reply r) { p.set_value(std::move(r)); });
  return f.get();
}

void participant::abort_async(const std::string& tx, std::function<void(reply)> done) {
  auto e = entry(tx);
  when_free(e, [this, tx, e, done = std::move(done)](std::unique_lock<std::mutex>& lock) mutable {
    load(tx, *e);
    if (!e->loaded) {
      lock.unlock();
      done(error_reply(503, "participant store unreadable"));
      return;
    }
    if (spec_.role == config::participant_role::owner && e->rec &&
        (e->rec->state == tx_state::prepared || e->rec->state == tx_state::preparing)) {
      // The previous value goes back without a thread waiting; the transaction is busy meanwhile.
      e->busy = true;
      begin_flight();
      tx_record r = *e->rec;
      lock.unlock();
      compensate_async(r, [this, tx, e, r, done = std::move(done)](const std::string& failure) mutable {
        reply answer;
        if (!failure.empty()) {
          answer = error_reply(503, "compensating the owner: " + failure);
        } else {
          r.state = tx_state::aborted;
          r.since_us = now_us();
          {
            std::lock_guard entry_lock(e->mu);
            e->rec = r;
            store::write_batch b;
            add_record(b, tx, r);
            queue_write(e, std::move(b), false, nullptr);
          }
          finished(tx, r);
          answer = {200, state_body(r.state)};
        }
        done(std::move(answer));
        release(e);
        end_flight();
      });
      return;
    }
    auto r = do_abort(tx, *e);
    lock.unlock();
    done(std::move(r));
  });
}

reply participant::do_abort(const std::string& tx, tx_entry& e) {
  tx_record r;
  if (e.rec) {
    r = *e.rec;
    if (r.state == tx_state::aborted) return {200, state_body(r.state)};
    if (r.state == tx_state::committed)
      return error_reply(409, "transaction " + tx + " is committed here", tx_state::committed);
    if (spec_.role == config::participant_role::owner) {
      if (auto c = compensate(r); !c.empty()) return error_reply(503, "compensating the owner: " + c);
    }
  } else {
    // Never prepared here: remember the abort, so a prepare arriving late votes no.
    r.key = "";
  }
  r.state = tx_state::aborted;
  r.since_us = now_us();
  if (auto ec = persist(tx, r, false, nullptr, &e)) return error_reply(503, "participant store: " + ec.message());
  bool held = e.rec.has_value();
  e.rec = r;
  if (held) finished(tx, r);
  return {200, state_body(r.state)};
}

reply participant::query(const std::string& tx, std::uint64_t version) {
  auto e = entry(tx);
  std::promise<reply> p;
  auto f = p.get_future();
  when_free(e, [this, tx, version, e, &p](std::unique_lock<std::mutex>&) {
    load(tx, *e);
    if (!e->loaded) {
      p.set_value(error_reply(503, "participant store unreadable"));
      return;
    }
    if (!e->rec) {
      auto age_us = now_us() - static_cast<std::int64_t>(version);
      auto window_us = std::chrono::duration_cast<std::chrono::microseconds>(options_.retention).count() / 2;
      // It can no longer vote yes: aborted.
      p.set_value(version != 0 && age_us < window_us ? do_abort(tx, *e) : reply{200, R"({"state":"unknown"})"});
      return;
    }
    tx_state s = e->rec->state == tx_state::preparing ? tx_state::prepared : e->rec->state;
    p.set_value({200, state_body(s)});
  });
  return f.get();
}

void participant::resolve_overdue() {
  auto now = std::chrono::steady_clock::now();
  std::vector<std::string> due;
  std::vector<std::pair<std::string, std::string>> expired;  // index key, transaction
  {
    std::lock_guard lock(mu_);
    for (auto& [tx, o] : open_) {
      if (o.next_look <= now) {
        due.push_back(tx);
        o.next_look = now + options_.ask_backoff;
      }
    }
    for (auto it = live_.begin(); it != live_.end();) it = it->second.expired() ? live_.erase(it) : std::next(it);
  }
  // Finished records past retention, oldest first, through their time index ("g" <time> <id>,
  // written with them): nothing of them is held in memory.
  std::int64_t horizon = now_us() - std::chrono::duration_cast<std::chrono::microseconds>(options_.retention).count();
  std::vector<store::entry> old_ones;
  std::string gc_end = gc_key(horizon, "");
  if (!kv_->scan(std::string(1, kGcPrefix), gc_end, 1000, old_ones)) {
    for (const auto& [k, v] : old_ones) expired.emplace_back(k, k.substr(9));
  }
  for (const auto& [index, tx] : expired) {
    auto e = entry(tx);
    std::lock_guard tx_lock(e->mu);
    if (e->busy) continue;  // looked at again at the next round
    load(tx, *e);
    store::write_batch b;
    b.del(index);
    // A committed owner record not yet published stays (its index goes; publishing it writes
    // the index again): dropped, its event would never be published.
    if (e->rec && (e->rec->state == tx_state::committed || e->rec->state == tx_state::aborted) && e->rec->published &&
        gc_key(e->rec->since_us, tx) == index) {
      b.del(tx_key(tx));
    }
    if (!kv_->write(b, false)) {
      e->loaded = false;
      e->rec.reset();
    }
  }
  for (const auto& tx : due) {
    auto e = entry(tx);
    std::lock_guard tx_lock(e->mu);
    if (e->busy) continue;  // a prepare or abort in flight: looked at again in a second
    // A record of it still queued in the writer: its callback takes the entry's mutex, which
    // this thread holds while it publishes, and with the publisher's writer (one queue) that
    // publish would wait behind the callback. Looked at again in a second.
    if (e->writes_queued > 0) continue;
    load(tx, *e);
    if (!e->rec) continue;
    if (e->rec->state == tx_state::preparing && voted_no(tx)) {
      // This participant voted no and its compensation failed: it keeps compensating.
      auto r = do_abort(tx, *e);
      if (r.status != 200) log::warn("participant: compensation pending", {{"tx", tx}, {"detail", r.body}});
      continue;
    }
    if (e->rec->state == tx_state::committed && !e->rec->published) {
      // Owner: committed, its publish refused or lost with a crash: published again.
      if (e->committing) continue;
      auto r = do_commit(tx, e, nullptr).value_or(reply{});
      if (r.status != 200)
        log::warn("participant: publishing a committed change again", {{"tx", tx}, {"detail", r.body}});
      continue;
    }
    // A `preparing` record found at start may have voted yes (its `prepared` record is not
    // fsync'd): it asks, as a prepared one does.
    if (e->rec->state != tx_state::prepared && e->rec->state != tx_state::preparing) continue;
    std::string outcome = outcomes_->ask_coordinator(tx);
    if (outcome != "committed" && outcome != "aborted") {
      // The coordinator is away or still deciding: a peer that committed or aborted knows.
      for (const auto& peer : e->rec->peers) {
        std::string s = outcomes_->ask_peer(peer, spec_.product, tx, e->rec->version);
        if (s == "committed" || s == "aborted") {
          outcome = s;
          break;
        }
      }
    }
    if (outcome == "committed" || outcome == "aborted") {
      auto r = outcome == "committed" ? do_commit(tx, e, nullptr).value_or(reply{}) : do_abort(tx, *e);
      log::info("participant: resolved an overdue transaction",
                {{"product", spec_.product}, {"tx", tx}, {"outcome", outcome}, {"status", std::to_string(r.status)}});
    }
  }
}

}  // namespace datashare::sidecar::participant
