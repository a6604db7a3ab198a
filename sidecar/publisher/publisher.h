#pragma once
// The owner side of a DataProduct: PUT/DELETE → checked → durable outbox (fsync) → 202 → Kafka.
//
// submit() checks the change against the product's fields (400 on unknown fields or wrong types;
// restricted fields dropped, never published) and queues it. The writer thread takes every queued
// change at once, assigns versions and sequence numbers, writes them in one fsync'd batch (group
// commit) and only then answers 202, so an accepted change survives a crash. The drain thread
// produces entries in sequence order with an idempotent producer (acks=all), key = entity key, so
// per-key order holds, and deletes them once acknowledged. While Kafka is down librdkafka holds the
// in-flight window and the outbox grows on disk, up to outbox.maxEntries: beyond it, 503 with
// Retry-After, and nothing stored is dropped. A failed delivery rewinds to the oldest unacknowledged
// entry and produces everything from there again (versions make the duplicates harmless, and the
// newest state stays last for each key, which compaction keeps).
//
// Threading: submit() and depth() from any thread; one writer and one drain thread of its own.
// Owns its store and producer.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "sidecar/config/config.h"
#include "sidecar/kafka/client.h"
#include "sidecar/metrics/metrics.h"
#include "sidecar/publisher/outbox.h"
#include "sidecar/store/kv.h"

namespace datashare::sidecar::publisher {

struct publish_result {
  unsigned status = 202;  // 202 accepted, 400 invalid, 409 version below the key's, 503 outbox full, 500 store failure
  std::string body;       // JSON
  std::uint64_t version = 0;
  int retry_after_s = 0;  // with 503, and with 409 for a key a gateway transaction holds
};

using publish_callback = std::function<void(publish_result)>;

struct publisher_options {
  std::size_t in_flight_window = 20000;  // entries handed to the producer and not yet acknowledged
  std::size_t max_group = 1024;          // changes per fsync'd batch
  std::chrono::milliseconds rewind_backoff{500};
  // How long the drain waits, after handing the producer what the outbox holds, for those
  // messages to be sent and acknowledged before it takes the next ones (see drain_once).
  std::chrono::milliseconds flush_wait{100};
};

// Checks a PUT body against the product: a JSON object, known fields of the right types, the key
// field (when present) equal to the key in the path: the same string, or for an integer key the
// number the path spells (event::key_field_value; a path that spells none is a 400). Restricted
// fields are dropped; the key field is added when absent. Returns "" and sets `value` to the JSON
// to publish, or the problem for a 400.
std::string check_change(const config::product_schema& product, std::string_view key, std::string_view body,
                         std::string& value);

class publisher {
 public:
  publisher(config::publish_spec spec, std::unique_ptr<store::kv> kv, kafka::client_factory& kafka,
            metrics::publisher_probe probe, publisher_options options = {});
  ~publisher();

  // Reads the outbox left by a previous run (it is drained first) and starts both threads.
  std::error_code start(std::string& error);
  void stop();

  // `body`: the JSON entity for PUT; nullopt for DELETE. `done` runs exactly once, inline for a
  // rejected change, on the writer thread once stored. `version`: the version the change must
  // carry (a gateway transaction's), used as is when not below the version the key was last
  // published with, and refused (409, nothing written) when below: never renumbered, as its
  // copies hold it. 0: the outbox's clock decides, above the key's last version. `with`: writes
  // of the caller's own that go into the outbox's store in the same atomic, fsync'd batch as the
  // change (the owner participant's `committed` record, whose keys never meet the outbox's):
  // both are on stable storage when `done` says 202, and neither is when it says anything else.
  void submit(std::string key, std::optional<std::string> body, publish_callback done, std::uint64_t version = 0,
              store::write_batch with = {});

  // Writes of the caller's own, alone (no change), queued with the changes: written by the
  // writer thread in the order queued, in its next group (synced when `sync` or the group holds
  // a change), then `done` runs on that thread. The owner participant's records go this way, so
  // they share the outbox's fsyncs and one writer thread.
  void write(store::write_batch batch, std::function<void(std::error_code)> done, bool sync);

  // The outbox's store: the owner participant of the same product keeps its records there
  // (sidecar/participant/README.md), so its commit and the outbox entry share one fsync.
  store::kv& store() { return *kv_; }

  // The version `key` was last published with (the floor a given version must not be below);
  // 0 when unreadable. From any thread after start().
  std::uint64_t version_floor(const std::string& key) const;

  // The owner participant's lock (sidecar/participant/README.md): `holder(key)` answers the
  // gateway transaction holding `key` (prepared, not yet committed or aborted), or "". A direct
  // change (no version given: the owner app's PUT or DELETE) of a held key is refused, 409 naming
  // the transaction, nothing written: published now, it would raise the key's version floor over
  // the transaction's version, and the transaction's commit would then be refused (in doubt at
  // the gateway). The writer thread asks, for the group that writes the change, so a prepare that
  // takes the key after the answer finds the change's floor once its own `preparing` record is
  // written (it checks again then). From any thread; `holder` must outlive the publisher's use.
  using key_holder = std::function<std::string(const std::string& key)>;
  void set_key_holder(key_holder holder);

  std::uint64_t depth() const { return next_sequence_.load() - acked_prefix_.load(); }
  const config::publish_spec& spec() const { return spec_; }

 private:
  struct change {
    std::string key;
    bool deleted = false;
    std::string value;
    publish_callback done;
    std::uint64_t version = 0;
    store::write_batch with;  // the caller's writes, in the same batch
    // write(): no change, only `with`; `written` answers.
    bool records_only = false;
    bool sync = true;
    std::function<void(std::error_code)> written;
  };

  void write_loop();
  void drain_loop();
  bool drain_once();
  void on_delivery(const kafka::delivery& d);
  std::string new_event_id();

  config::publish_spec spec_;
  std::unique_ptr<store::kv> kv_;
  kafka::client_factory& kafka_;
  metrics::publisher_probe probe_;
  publisher_options options_;

  std::mutex mu_;  // guards queue_, stopping_
  std::condition_variable queued_cv_;
  std::deque<change> queue_;
  std::size_t queued_changes_ = 0;  // in queue_, not counting write()'s
  bool stopping_ = false;
  bool writer_gone_ = false;                      // write_loop returned: write() answers at once
  std::shared_ptr<const key_holder> key_holder_;  // guarded by mu_; read by the writer per group

  // Writer-thread state.
  std::uint64_t last_version_ = 0;
  bool base_floor_stored_ = false;            // kBaseFloorKey is in the store (else: written with the next change)
  std::atomic<std::uint64_t> base_floor_{0};  // every key's version floor without a record of its own (outbox.h)
  std::mt19937_64 rng_;

  std::atomic<std::uint64_t> next_sequence_{0};  // next to assign (writer)
  std::atomic<std::uint64_t> acked_prefix_{0};   // every entry below is acknowledged and deleted (drain)
  std::mutex drain_mu_;                          // pairs with appended_cv_
  std::condition_variable appended_cv_;

  // Drain-thread state.
  std::unique_ptr<kafka::producer> producer_;
  std::uint64_t send_cursor_ = 0;  // next sequence to produce
  enum class delivery_state { pending, acked, failed };
  std::map<std::uint64_t, delivery_state> in_flight_;
  bool delivery_failed_ = false;
  std::atomic<bool> stop_drain_{false};

  std::thread writer_, drainer_;
};

}  // namespace datashare::sidecar::publisher
