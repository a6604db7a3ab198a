#pragma once
// How a replica lays its copy out in a store::kv (one store per policy):
//   "d" <key>                 → record: version, event time, deleted flag, projected JSON
//   "o" <partition, 4 bytes>  → next offset to read in that partition
//   "s" <counter name> <partition, 4 bytes> → persistent counters (applied, stale, dlq) across
//                             restarts, one per partition (summed when read), so that batches of
//                             different partitions never write the same key
// The offsets and counters are written in the same batch as the data they account for, so a
// crash at any point leaves the three consistent. Deleted keys keep a small tombstone record so
// that an older event replayed later cannot bring them back.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::replica {

inline constexpr char kDataPrefix = 'd';
inline constexpr char kOffsetPrefix = 'o';
inline constexpr std::string_view kAppliedCounter = "sapplied";
inline constexpr std::string_view kStaleCounter = "sstale";
inline constexpr std::string_view kDlqCounter = "sdlq";

std::string data_key(std::string_view key);
std::string offset_key(std::int32_t partition);

std::string encode_u64(std::uint64_t v);
std::optional<std::uint64_t> decode_u64(std::string_view bytes);

struct record {
  std::uint64_t version = 0;
  std::int64_t event_time_us = 0;
  bool deleted = false;
  std::string_view value;  // projected JSON; empty for a tombstone. Points into the encoded bytes.
};

std::string encode_record(std::uint64_t version, std::int64_t event_time_us, bool deleted, std::string_view value);
// The same into `out` (replaced), keeping its capacity.
void encode_record(std::string& out, std::uint64_t version, std::int64_t event_time_us, bool deleted,
                   std::string_view value);
std::optional<record> decode_record(std::string_view bytes);

// The next offset to read for every partition the store has applied from.
std::error_code load_offsets(const store::kv& kv, std::map<std::int32_t, std::int64_t>& out);

std::string counter_key(std::string_view name, std::int32_t partition);
// A counter summed over every partition (and the single key of a store not migrated yet).
std::uint64_t load_counter(const store::kv& kv, std::string_view name);
// One partition's count.
std::uint64_t load_counter(const store::kv& kv, std::string_view name, std::int32_t partition);
// A store written before the counters were per partition has one key per counter ("s" <name>):
// their counts are added to `partition`'s keys and the single keys deleted, in one write. Nothing
// to do (and no write) on a store without them.
std::error_code migrate_counters(store::kv& kv, std::int32_t partition);

}  // namespace datashare::sidecar::replica
