#pragma once
// store::kv with an in-memory hash index for point reads (`readIndex: memory` of a replica,
// sidecar/config/README.md). A random GET of a replica holding 1,000,000 keys spent 4.5-6.3 us in
// RocksDB's lookup, almost all of it memory misses down the index and data blocks of ~235 MB of
// tables (P2, docs/benchmarks.md); the hash answers with one or two misses. It costs the memory of
// every indexed key and value (P7) and a copy into the index per applied write.
//
// The index holds every key that starts with `prefix` (the replica's data records, "d...") with
// its value, loaded by one scan of the inner store when it is built and updated after each write
// returns from the inner store: a reader never sees a value the inner store has not accepted
// (the replica's store has no log: "accepted" is RocksDB's memtable, what its own reads see too).
// get/multi_get of an indexed key never touch the inner store; other keys, scans, flush and
// properties go to it.
//
// Threading: like every kv, all methods may be called from several threads at once. The index is
// split into shards, each under a shared_mutex held only to find, copy out or swap one entry:
// a reader sees a key's value before or after a write, never a torn one. The keys of one batch
// become visible one by one (a point read is per key; scans read the inner store, atomic per
// batch). Writes that touch the same key must not run concurrently (the replica's are: each
// partition's keys are written by one worker at a time): the index applies each write's batch
// after the inner store does, and two such writes could otherwise land in the index in the other
// order.

#include <memory>
#include <string>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::store {

// Wraps `inner`, indexing the keys that start with `prefix` (all keys if empty). Scans the inner
// store once to load them; on a failed scan returns null and sets `error`.
std::unique_ptr<kv> with_read_index(std::unique_ptr<kv> inner, std::string prefix, std::error_code& error);

}  // namespace datashare::sidecar::store
