#pragma once
// The replica's decisions, as pure-ish code (it reads the store, never writes it): for a batch of
// Kafka messages, which events to apply, which are stale, which are poison, and one write batch
// holding the projected data, each partition's next offset and the persistent counters.
//
// Rules (DESIGN.md §4): key = message key; value = JSON state, null = deleted; an event is applied
// only when its datashare_version is newer than the stored one (tombstones included), so
// duplicates and replays are harmless; only the policy's fields are kept. Poison (no key, no or bad
// version, value not a JSON object, wrong field types, key field disagreeing with the key,
// oversized) is reported with a reason for the dead-letter topic and skipped; the stream goes on.
//
// Stateless between calls; const methods may run on several threads. No exceptions.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "sidecar/config/config.h"
#include "sidecar/kafka/message.h"
#include "sidecar/replica/written_keys.h"
#include "sidecar/store/kv.h"

namespace datashare::sidecar::replica {

struct decision {
  enum kind_t { upsert, remove, poison } kind = poison;
  std::uint64_t version = 0;
  std::int64_t event_time_us = 0;
  std::string value;  // upsert: the projected JSON; poison: the reason
};

// Key → version, for one batch: open addressing over string views (into the batch's messages or
// a plan's write batch), no allocation per key. reset() sizes it for a number of keys; entries do
// not move until the next reset().
class version_table {
 public:
  // 24 bytes (the key as pointer and 32-bit size): the table of a 5,000-event batch is 192 KiB,
  // and its random accesses (one per event) miss the caches less than with 32-byte slots at a
  // lower load (the probe was ~8 % of the apply loop's CPU, nearly all of it cache misses).
  struct slot {
    const char* data = nullptr;
    std::uint32_t size = 0;
    std::uint32_t generation = 0;
    std::uint64_t version = 0;
    std::string_view key() const { return {data, size}; }
  };

  void reset(std::size_t keys);
  // The slot of `key`, added with version 0 when absent (`added` says so).
  slot& find_or_add(std::string_view key, bool& added);
  // The version recorded for `key`, 0 when absent.
  std::uint64_t find(std::string_view key) const;
  bool empty() const { return size_ == 0; }

 private:
  std::vector<slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::uint32_t generation_ = 0;
};

// The persistent counters (applied, stale, dead-lettered) before a batch.
struct totals {
  std::uint64_t applied = 0;
  std::uint64_t stale = 0;
  std::uint64_t dlq = 0;
};

struct plan {
  store::write_batch batch;
  std::vector<std::pair<const kafka::message*, std::string>> poison;  // message, reason
  std::uint64_t applied = 0;                                          // upserts and deletes written
  std::uint64_t stale = 0;
  std::uint64_t replayed = 0;                // below the stored offset of their partition: already applied
  std::vector<std::int64_t> propagation_us;  // event time → now, one per applied event
  std::int64_t newest_event_time_us = 0;     // of the events seen (applied, stale or poison)
  std::map<std::int32_t, totals> counted;    // what the batch adds to each partition's counters
  version_table written;                     // data key (without prefix) → version, views into `batch`

  // Empties the plan for the next batch, keeping its buffers.
  void clear() {
    batch.clear();
    poison.clear();
    applied = stale = replayed = 0;
    propagation_us.clear();
    newest_event_time_us = 0;
    counted.clear();
    written.reset(0);
  }
};

class applier {
 public:
  explicit applier(const config::subscribe_spec& spec);

  decision decide(const kafka::message& m) const;
  // The same, into `d`, reusing the capacity of its value.
  void decide(const kafka::message& m, decision& d) const;

  // Decides `messages` (in consumption order) against the stored versions and fills `out`
  // (cleared first; its buffers are reused, so a caller keeps one plan for every batch).
  // Fails only when the store cannot be read; then nothing must be written.
  //
  // Pipelining: `in_flight` are plans of earlier batches that may still be being written (the
  // store may or may not show them yet): their versions count as stored. Versions only grow, so
  // counting a plan that is already written, or one that will be written later or read again
  // after a failed write, is harmless. `before` gives each partition's counters including
  // everything written or in flight for it (otherwise they are read from the store; a partition
  // missing from it has none).
  //
  // `fresh`: the store held no data record when this run started, and every key written since
  // (in flight included) was added to it. A key it has never seen cannot have a stored version,
  // so its lookup is skipped (a bootstrap's keys are nearly all new). prepare() adds the keys of
  // this batch's events (valid ones, applied or not) as it meets them, before anything of the
  // batch is written: extra keys (a stale event's, a batch that is never written) only cost
  // lookups later, a missing one would be a wrong answer.
  std::error_code prepare(std::span<const kafka::message> messages, const store::kv& kv, std::int64_t now_us, plan& out,
                          std::span<const plan* const> in_flight = {},
                          const std::map<std::int32_t, totals>* before = nullptr, written_keys* fresh = nullptr) const;

 private:
  config::product_schema product_;
  std::vector<std::string> fields_;
  std::vector<std::string> quoted_fields_;  // as JSON strings, for the projection
  std::uint64_t max_event_bytes_;
};

}  // namespace datashare::sidecar::replica
