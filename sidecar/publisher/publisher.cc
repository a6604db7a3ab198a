#include "sidecar/publisher/publisher.h"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

#include "common/clock.h"
#include "sidecar/event/cloudevents.h"
#include "sidecar/event/schema.h"

namespace datashare::sidecar::publisher {
namespace {

std::int64_t now_us() {
  return common::wall_now_us();
}

std::string be_u64(std::uint64_t v) {
  std::string out;
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
  return out;
}

std::uint64_t from_be_u64(std::string_view b) {
  std::uint64_t v = 0;
  for (char c : b.substr(0, 8)) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

std::string error_body(std::string_view message) {
  return nlohmann::json{{"error", message}}.dump();
}

}  // namespace

std::string check_change(const config::product_schema& product, std::string_view key, std::string_view body,
                         std::string& value) {
  if (!event::is_valid_utf8(key)) return "the key is not valid UTF-8";
  auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return "body is not JSON";
  std::string problem = event::check_entity(json, product, event::unknown_fields::reject);
  if (!problem.empty()) return problem;
  const config::field* key_field = product.find(product.key);
  auto want = event::key_field_value(key_field != nullptr ? key_field->type : config::field_type::string, key);
  if (want.is_discarded()) return "the key \"" + std::string(key) + "\" is not an integer (the product's key is)";
  if (auto it = json.find(product.key); it != json.end() && !it->is_null()) {
    if (*it != want) {
      std::string body_key = it->is_string() ? it->get<std::string>() : it->dump();
      return "key field \"" + product.key + "\" is \"" + body_key + "\" but the path says \"" + std::string(key) + "\"";
    }
  } else if (key_field != nullptr) {
    json[product.key] = std::move(want);
  }
  for (const auto& f : product.fields) {
    if (f.restricted) json.erase(f.name);
  }
  value = json.dump();
  return {};
}

publisher::publisher(config::publish_spec spec, std::unique_ptr<store::kv> kv, kafka::client_factory& kafka,
                     metrics::publisher_probe probe, publisher_options options)
    : spec_(std::move(spec)),
      kv_(std::move(kv)),
      kafka_(kafka),
      probe_(probe),
      options_(options),
      rng_(std::random_device()()) {}

publisher::~publisher() {
  stop();
}

std::error_code publisher::start(std::string& error) {
  std::string v;
  if (auto ec = kv_->get(kVersionKey, v); !ec) {
    last_version_ = from_be_u64(v);
  } else if (ec != store::errc::not_found) {
    error = "outbox unreadable: " + ec.message();
    return ec;
  }
  if (auto ec = kv_->get(kBaseFloorKey, v); !ec) {
    base_floor_ = from_be_u64(v);
    base_floor_stored_ = true;
  } else if (ec == store::errc::not_found) {
    // A new outbox, or one from before the per-key floors, which kept only the last version
    // assigned: that version is every key's floor until the key is published again. Nothing
    // stored is rewritten; the floor is stored with the first change (write_loop), before any
    // later version is, so a later start does not raise it.
    base_floor_ = last_version_;
  } else {
    error = "outbox unreadable: " + ec.message();
    return ec;
  }
  std::uint64_t next = 0;
  if (auto ec = kv_->get(kNextSequenceKey, v); !ec) {
    next = from_be_u64(v);
  } else if (ec != store::errc::not_found) {
    error = "outbox unreadable: " + ec.message();
    return ec;
  }
  std::vector<store::entry> first;
  if (auto ec = kv_->scan(std::string(1, kEntryPrefix), std::string(1, kEntryPrefix + 1), 1, first)) {
    error = "outbox unreadable: " + ec.message();
    return ec;
  }
  std::uint64_t oldest = first.empty() ? next : sequence_of(first[0].first).value_or(next);
  next_sequence_ = next;
  acked_prefix_ = oldest;
  send_cursor_ = oldest;
  producer_ = kafka_.make_producer(
      true, [this](const kafka::delivery& d) { on_delivery(d); }, error);
  if (!producer_) return kafka::make_error(-1);
  if (next > oldest) {
    std::cerr << "datashare-sidecar: product " << spec_.product.name << ": " << (next - oldest)
              << " changes from the previous run are in the outbox; sending them first\n";
  }
  probe_.outbox_depth->Set(static_cast<double>(depth()));
  writer_ = std::thread([this] { write_loop(); });
  drainer_ = std::thread([this] { drain_loop(); });
  return {};
}

std::uint64_t publisher::version_floor(const std::string& key) const {
  std::string stored;
  if (auto ec = kv_->get(key_floor_key(key), stored); !ec)
    return std::max(base_floor_.load(), from_be_u64(stored));
  else if (ec != store::errc::not_found)
    return 0;
  return base_floor_.load();
}

void publisher::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !writer_.joinable() && !drainer_.joinable()) return;
    stopping_ = true;
  }
  queued_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  stop_drain_ = true;
  appended_cv_.notify_all();
  if (drainer_.joinable()) drainer_.join();
}

void publisher::submit(std::string key, std::optional<std::string> body, publish_callback done, std::uint64_t version,
                       store::write_batch with) {
  change c;
  c.key = std::move(key);
  c.version = version;
  c.with = std::move(with);
  c.deleted = !body.has_value();
  if (!event::is_valid_utf8(c.key)) {
    probe_.invalid->Increment();
    done({400, error_body("the key is not valid UTF-8"), 0, 0});
    return;
  }
  if (body) {
    std::string problem = check_change(spec_.product, c.key, *body, c.value);
    if (!problem.empty()) {
      probe_.invalid->Increment();
      done({400, error_body(problem), 0, 0});
      return;
    }
  }
  c.done = std::move(done);
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      lock.unlock();
      c.done({503, error_body("the sidecar is shutting down"), 0, 1});
      return;
    }
    if (depth() + queued_changes_ >= spec_.outbox.max_entries) {
      lock.unlock();
      probe_.outbox_full->Increment();
      c.done({503,
              error_body("outbox full (" + std::to_string(spec_.outbox.max_entries) +
                         " changes not yet acknowledged by Kafka): retry later"),
              0, 1});
      return;
    }
    queue_.push_back(std::move(c));
    ++queued_changes_;
  }
  queued_cv_.notify_one();
}

void publisher::write(store::write_batch batch, std::function<void(std::error_code)> done, bool sync) {
  change c;
  c.records_only = true;
  c.with = std::move(batch);
  c.sync = sync;
  c.written = std::move(done);
  {
    std::unique_lock lock(mu_);
    if (writer_gone_) {
      lock.unlock();
      c.written(store::make_error_code(store::errc::io_error));
      return;
    }
    queue_.push_back(std::move(c));
  }
  queued_cv_.notify_one();
}

std::string publisher::new_event_id() {
  std::uint64_t a = rng_(), b = rng_();
  a = (a & 0xffffffffffff0fffULL) | 0x4000ULL;              // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
                static_cast<unsigned>(b >> 48), static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

void publisher::set_key_holder(key_holder holder) {
  auto h = holder ? std::make_shared<const key_holder>(std::move(holder)) : nullptr;
  std::lock_guard lock(mu_);
  key_holder_ = std::move(h);
}

void publisher::write_loop() {
  std::vector<change> group;
  std::shared_ptr<const key_holder> holder;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      queued_cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      holder = key_holder_;  // after the wait: as set when the group was taken
      if (queue_.empty()) {
        writer_gone_ = true;
        return;  // stopping, and everything queued was answered
      }
      while (!queue_.empty() && group.size() < options_.max_group) {
        if (!queue_.front().records_only) --queued_changes_;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    store::write_batch batch;
    std::int64_t now = now_us();
    std::uint64_t seq = next_sequence_.load();
    std::vector<std::uint64_t> versions;
    versions.reserve(group.size());
    bool sync = false;
    bool changes = false;
    // The caller's own writes that ride in this batch (`with`: the owner participant's records).
    auto add_with = [&batch](const auto& c) {
      for (std::size_t i = 0; i < c.with.size(); ++i) {
        const auto& op = c.with[i];
        if (op.is_delete) {
          batch.del(op.key);
        } else {
          batch.put(op.key, op.value);
        }
      }
    };
    // Each key's version floor (the last version it was published with), this group's over the
    // stored ones; nullopt when it cannot be read.
    std::unordered_map<std::string, std::uint64_t> floors;
    auto floor_of = [&](const std::string& key) -> std::optional<std::uint64_t> {
      if (auto it = floors.find(key); it != floors.end()) return it->second;
      std::string stored;
      if (auto ec = kv_->get(key_floor_key(key), stored); !ec)
        return std::max(base_floor_.load(), from_be_u64(stored));
      else if (ec != store::errc::not_found)
        return std::nullopt;
      return base_floor_.load();
    };
    for (auto& c : group) {
      versions.push_back(0);
      if (c.records_only) {
        sync = sync || c.sync;
        add_with(c);
        continue;
      }
      auto floor = floor_of(c.key);
      if (!floor) {
        probe_.store_error->Increment();
        std::exchange(c.done, nullptr)({500, error_body("outbox read failed"), 0, 0});
        continue;
      }
      if (c.version != 0 && c.version < *floor) {
        // A given version (a gateway transaction's) is the one its copies hold: it is never
        // renumbered. Below the key's floor it would be skipped as stale by every consumer, so
        // the change is refused and nothing of it (nor of `with`) is written. The owner
        // participant votes no at prepare for such a version (sidecar/participant/README.md).
        probe_.below_floor->Increment();
        std::exchange(c.done, nullptr)({409,
                                        error_body("version " + std::to_string(c.version) + " of key \"" + c.key +
                                                   "\" is below the version it was last published with (" +
                                                   std::to_string(*floor) + "): refused, never renumbered"),
                                        0, 0});
        continue;
      }
      if (c.version == 0 && holder) {
        // A direct change of a key a gateway transaction holds: its commit's version would fall
        // below the floor this change sets (set_key_holder in publisher.h).
        if (auto tx = (*holder)(c.key); !tx.empty()) {
          probe_.held->Increment();
          std::exchange(c.done, nullptr)(
              {409,
               nlohmann::json{{"error", "key \"" + c.key + "\" is held by gateway transaction " + tx +
                                            " (prepared, not yet committed or aborted): retry once it ends"},
                              {"transaction", tx}}
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
               0, 1});
          continue;
        }
      }
      sync = true;
      changes = true;
      entry e;
      e.key = c.key;
      // A given version as is (equal to the floor: the same transaction's publish again, which
      // consumers skip as a duplicate); otherwise the outbox's clock, above the key's floor.
      e.version = c.version != 0 ? c.version : std::max(next_version(last_version_, now), *floor + 1);
      last_version_ = std::max(last_version_, e.version);
      floors[c.key] = e.version;
      batch.put(key_floor_key(c.key), be_u64(e.version));
      e.time_us = now;
      e.id = new_event_id();
      e.deleted = c.deleted;
      e.value = std::move(c.value);
      batch.put(entry_key(seq++), encode_entry(e));
      add_with(c);
      versions.back() = e.version;
    }
    if (changes) {
      if (!base_floor_stored_) batch.put(kBaseFloorKey, be_u64(base_floor_.load()));
      batch.put(kVersionKey, be_u64(last_version_));
      batch.put(kNextSequenceKey, be_u64(seq));
    }
    // One fsync for the whole group: every change in it (with the writes its submit brought) is on
    // disk before any is answered. A group of write()'s alone is synced only when one asks.
    if (auto ec = kv_->write(batch, sync)) {
      for (auto& c : group) {
        if (c.records_only) {
          c.written(ec);
          continue;
        }
        if (!c.done) continue;  // refused above
        probe_.store_error->Increment();
        c.done({500, error_body("outbox write failed: " + ec.message()), 0, 0});
      }
    } else {
      if (changes) {
        base_floor_stored_ = true;
        next_sequence_ = seq;
        {
          // Taking the drain's lock orders this notify after its check of next_sequence_: no
          // wake-up is lost between the check and the wait (it would cost up to a 5 ms nap).
          std::lock_guard lock(drain_mu_);
        }
        appended_cv_.notify_one();
        probe_.outbox_depth->Set(static_cast<double>(depth()));
      }
      for (std::size_t i = 0; i < group.size(); ++i) {
        if (group[i].records_only) {
          group[i].written({});
          continue;
        }
        if (!group[i].done) continue;  // refused above
        probe_.accepted->Increment();
        nlohmann::json body{
            {"product", spec_.product.name}, {"key", group[i].key}, {"version", versions[i]}, {"status", "accepted"}};
        group[i].done({202, body.dump(), versions[i], 0});
      }
    }
    group.clear();
  }
}

void publisher::on_delivery(const kafka::delivery& d) {
  auto it = in_flight_.find(d.token);
  if (it == in_flight_.end()) return;  // from before a rewind: already accounted for
  if (d.error) {
    if (!delivery_failed_) {
      std::cerr << "datashare-sidecar: product " << spec_.product.name << ": delivery failed: " << d.error.message()
                << "; will send again from the oldest unacknowledged change\n";
    }
    it->second = delivery_state::failed;
    delivery_failed_ = true;
  } else {
    it->second = delivery_state::acked;
  }
}

bool publisher::drain_once() {
  producer_->poll(std::chrono::milliseconds(0));
  bool progressed = false;

  // Delete the acknowledged prefix from the outbox. Not fsync'd: losing this in a machine crash
  // only means sending those changes again.
  store::write_batch done;
  std::uint64_t prefix = acked_prefix_.load();
  while (!in_flight_.empty() && in_flight_.begin()->second == delivery_state::acked) {
    done.del(entry_key(in_flight_.begin()->first));
    prefix = in_flight_.begin()->first + 1;
    in_flight_.erase(in_flight_.begin());
  }
  if (!done.empty()) {
    if (auto ec = kv_->write(done, false)) {
      std::cerr << "datashare-sidecar: product " << spec_.product.name << ": outbox cleanup failed: " << ec.message()
                << "\n";
    }
    probe_.delivered->Increment(static_cast<double>(done.size()));
    acked_prefix_ = prefix;
    probe_.outbox_depth->Set(static_cast<double>(depth()));
    progressed = true;
  }

  if (delivery_failed_) {
    // Rewind once every message in flight has been reported, so no report of the old round can
    // be mistaken for one of the new.
    for (const auto& [seq, state] : in_flight_) {
      if (state == delivery_state::pending) {
        producer_->poll(std::chrono::milliseconds(10));
        return true;
      }
    }
    if (producer_->fatal_error()) {
      std::string error;
      std::cerr << "datashare-sidecar: product " << spec_.product.name << ": producer fatal error ("
                << producer_->fatal_error().message() << "); making a new one\n";
      producer_.reset();
      while (!producer_ && !stop_drain_.load()) {
        producer_ = kafka_.make_producer(
            true, [this](const kafka::delivery& d) { on_delivery(d); }, error);
        if (!producer_) std::this_thread::sleep_for(options_.rewind_backoff);
      }
      if (!producer_) return false;
    }
    probe_.redelivered->Increment(static_cast<double>(send_cursor_ - acked_prefix_.load()));
    in_flight_.clear();
    send_cursor_ = acked_prefix_.load();
    delivery_failed_ = false;
    std::this_thread::sleep_for(options_.rewind_backoff);
    return true;
  }

  std::uint64_t end = next_sequence_.load();
  std::size_t produced = 0;
  if (!stop_drain_.load() && in_flight_.size() < options_.in_flight_window && send_cursor_ < end) {
    std::vector<store::entry> entries;
    std::size_t room = std::min<std::size_t>(options_.in_flight_window - in_flight_.size(), 1000);
    if (auto ec = kv_->scan(entry_key(send_cursor_), entry_key(end), room, entries)) {
      std::cerr << "datashare-sidecar: product " << spec_.product.name << ": outbox read failed: " << ec.message()
                << "\n";
      std::this_thread::sleep_for(options_.rewind_backoff);
      return false;
    }
    for (const auto& [k, bytes] : entries) {
      auto seq = sequence_of(k);
      auto e = decode_entry(bytes);
      if (!seq || !e) {
        // Unreadable, so it cannot be sent; left in place it would be read again every round and
        // hold the acknowledged prefix (and with it the outbox's depth) back for good, until the
        // outbox filled. Its bytes are moved aside (fsync'd) and it counts as done.
        if (!seq) continue;  // not an entry key: nothing in the sequence waits for it
        std::string aside(1, kQuarantinePrefix);
        aside += k.substr(1);
        store::write_batch b;
        b.put(aside, bytes);
        if (auto ec = kv_->write(b, true)) {
          std::cerr << "datashare-sidecar: product " << spec_.product.name
                    << ": cannot move the unreadable outbox entry " << *seq << " aside: " << ec.message() << "\n";
          break;  // tried again next round
        }
        std::cerr << "datashare-sidecar: product " << spec_.product.name << ": outbox entry " << *seq
                  << " is unreadable and cannot be published; its bytes are kept in the outbox under the 'q' prefix\n";
        in_flight_[*seq] = delivery_state::acked;
        send_cursor_ = *seq + 1;
        progressed = true;
        continue;
      }
      auto headers = event::make_headers(spec_.product, {e->id, e->key, e->version, e->time_us, e->deleted});
      std::optional<std::string_view> value;
      if (!e->deleted) value = e->value;
      auto ec = producer_->produce(spec_.topic, e->key, value, headers, e->time_us / 1000, *seq);
      if (ec == kafka::make_error(kafka::kErrQueueFull)) break;
      if (ec) {
        std::cerr << "datashare-sidecar: product " << spec_.product.name << ": produce failed: " << ec.message()
                  << "\n";
        delivery_failed_ = true;
        break;
      }
      in_flight_[*seq] = delivery_state::pending;
      send_cursor_ = *seq + 1;
      progressed = true;
      ++produced;
    }
  }
  if (produced > 0) {
    // Send now and wait for the acknowledgements (serving the delivery reports here), instead of
    // leaving the messages to linger.ms: librdkafka's broker thread waits out a linger with
    // poll(2) timeouts in whole milliseconds that round down to 0, i.e. it spins through the
    // last millisecond of every linger (with linger.ms=1, most of the time under load: 17 % of
    // the owner sidecar's CPU in P5), while flush() has it send at once. What the outbox gains
    // meanwhile goes in the next round, as one request: batches grow with the load, and no
    // request per message at low load either. A flush that times out (Kafka down or slow)
    // leaves the rest to linger.ms and the delivery reports, as before.
    (void)producer_->flush(options_.flush_wait);
  }
  return progressed;
}

void publisher::drain_loop() {
  while (!stop_drain_.load()) {
    if (!drain_once()) {
      std::unique_lock lock(drain_mu_);
      // Wake for new entries at once; otherwise every 5 ms to serve delivery reports.
      appended_cv_.wait_for(lock, std::chrono::milliseconds(5), [this] {
        return stop_drain_.load() ||
               (next_sequence_.load() > send_cursor_ && in_flight_.size() < options_.in_flight_window);
      });
      lock.unlock();
      producer_->poll(std::chrono::milliseconds(0));
    }
  }
  // Last chance to get acknowledgements for what is in flight; the rest is sent on next start.
  if (producer_ && !in_flight_.empty()) {
    (void)producer_->flush(std::chrono::seconds(2));
    delivery_failed_ = false;
    (void)drain_once();
  }
  producer_.reset();
}

}  // namespace datashare::sidecar::publisher
