#pragma once
// store::kv with an in-memory hash index for point reads (`readIndex: auto` and `memory` of a
// replica, sidecar/config/README.md). A random GET of a replica holding 1,000,000 keys spent 4.5-6.3 us in
// RocksDB's lookup, almost all of it memory misses down the index and data blocks of ~235 MB of
// tables (P2, docs/benchmarks.md); the hash answers with one or two misses. It costs the memory of
// every indexed key and value (P7), its build, and a copy into the index per write applied outside
// a bootstrap.
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
//
// Building: at open, the index is built by a scan of the inner store on a thread of its own
// while the store is in use (reads go to the inner store until it is complete; writes update it,
// a delete leaving a tombstone that the scan's older copy of the key cannot replace). During a bulk
// load (expect_new_keys(true), a replica's bootstrap) it is emptied and the writes skip it — a copy
// per written record cost a fifth of the bootstrap's apply rate (P1) — and built again the same way
// when the load ends.
//
// A budget (`readIndex: auto`, the default) bounds the memory of every index that shares it: when
// a write or a build takes the indexes past it, the index that crossed it is dropped — its memory
// freed, its reads from then on going to the inner store — until the store is opened again. A read
// never misses a key because of a drop: each shard is dropped under its lock, and a reader
// finding its shard dropped asks the inner store.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::store {

// Bytes that the read indexes sharing it may hold together. Thread-safe.
class memory_budget {
 public:
  explicit memory_budget(std::size_t limit) : limit_(limit) {}
  std::size_t limit() const { return limit_; }
  // What the indexes hold now (for a moment after a drop it may read low: a drop gives back its
  // bytes before a write racing it adds its own, which the drop has already counted).
  std::int64_t used() const { return used_.load(std::memory_order_relaxed); }
  // Adds `bytes` (negative to give back); true while the total is within the limit.
  bool add(std::int64_t bytes) {
    return used_.fetch_add(bytes, std::memory_order_relaxed) + bytes <= static_cast<std::int64_t>(limit_);
  }

 private:
  const std::size_t limit_;
  std::atomic<std::int64_t> used_{0};
};

struct read_index_options {
  // Null: no bound (`readIndex: memory`).
  std::shared_ptr<memory_budget> budget;
  // Called once when the index is dropped (on the thread of the write that crossed the budget, or
  // the build's), with the bytes it held and why: the budget crossed, or the build's scan failed.
  std::function<void(std::size_t index_bytes, const std::string& why)> on_drop;
};

// Wraps `inner`, indexing the keys that start with `prefix` (all keys if empty); the build starts
// at once. Properties: "datashare.read-index.entries", "datashare.read-index.bytes" (0 once
// dropped) and "datashare.read-index.state" (building, ready, suspended or dropped).
std::unique_ptr<kv> with_read_index(std::unique_ptr<kv> inner, std::string prefix, read_index_options options = {});

}  // namespace datashare::sidecar::store
