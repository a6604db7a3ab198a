#pragma once
// The publisher's durable outbox, laid out in a store::kv:
//   "e" <sequence, 8 bytes big-endian> → entry (key, version, time, id, deleted, JSON value)
//   "mversion"                          → the last version assigned (only grows)
//   "mnext"                             → the next sequence number
//   "q" <sequence, 8 bytes big-endian> → an entry that could not be decoded, moved aside as it was
//   "k" <entity key>                    → that key's version floor: the last version it was
//                                         published with (written in the entry's batch)
//   "mbasefloor"                        → every key's floor where it has no "k" record: the
//                                         last version assigned when an outbox older than the
//                                         per-key floors (2026-12-04) was first opened; 0 for a new one
//                                         (written with the first change after that)
// Entries are appended with an fsync before the caller is answered, produced in sequence order,
// and deleted once Kafka has acknowledged them. Pure encoding here; the threads are in publisher.h.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace datashare::sidecar::publisher {

inline constexpr char kEntryPrefix = 'e';
inline constexpr char kQuarantinePrefix = 'q';
inline constexpr std::string_view kVersionKey = "mversion";
inline constexpr std::string_view kNextSequenceKey = "mnext";
inline constexpr char kKeyFloorPrefix = 'k';
inline constexpr std::string_view kBaseFloorKey = "mbasefloor";

inline std::string key_floor_key(std::string_view key) {
  std::string out(1, kKeyFloorPrefix);
  out.append(key);
  return out;
}

struct entry {
  std::string key;
  std::uint64_t version = 0;
  std::int64_t time_us = 0;
  std::string id;  // ce_id, stable across re-sends
  bool deleted = false;
  std::string value;  // JSON state; empty when deleted
};

std::string entry_key(std::uint64_t sequence);
std::optional<std::uint64_t> sequence_of(std::string_view entry_key);
std::string encode_entry(const entry& e);
std::optional<entry> decode_entry(std::string_view bytes);

// The next version for a change accepted at `now_us`: a hybrid logical clock, max(now, last + 1).
// Microseconds of wall time keep versions growing even when an outbox is lost (a new pod, an
// emptied volume) or several owner pods publish, where a plain counter would restart below what
// replicas hold and have every later change skipped as stale.
inline std::uint64_t next_version(std::uint64_t last, std::int64_t now_us) {
  auto now = static_cast<std::uint64_t>(now_us < 0 ? 0 : now_us);
  return now > last ? now : last + 1;
}

}  // namespace datashare::sidecar::publisher
