#pragma once
// store::kv on RocksDB: one database directory per replica or outbox. Tuned for a sidecar's
// footprint (P7: idle RSS ≤ 16 MiB): a small block cache shared by every store of the process,
// bloom filters so version lookups of new keys skip the disk, a bounded number of open files.
// Thread-safe (RocksDB is); owns the database and closes it on destruction.

#include <memory>
#include <string>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::store {

inline constexpr std::size_t kMemtableBloomBytes = 800 << 10;
inline constexpr std::size_t kReplicaWriteBufferBytes = 32 << 20;  // a replica's memtables (sidecar/main.cc)
inline constexpr std::size_t kBlockCacheBytes = 32 << 20;          // the process's block cache, at most

// What a sidecar's stores may hold in memory, from the memory the process may use
// (common/memory.h memory_limit) and the number of replica stores. A replica's store holds up to
// four memtables (two flushing while two fill) or, while it bootstraps, two stages of two
// memtables' size: four write buffers either way; the replicas together get a quarter of the
// limit for them (the read indexes another quarter, suspended during a bootstrap). A write-ahead-
// logged store (outbox, participant) two memtables. The block cache a sixteenth. Each within
// bounds: the defaults at most (a large machine changes nothing), and never so small that a
// store flushes tiny files. The read indexes of `readIndex: auto` share the quarter left for them
// (read_index.h memory_budget); 0 when the limit is unknown: no auto index then.
struct store_memory {
  std::size_t replica_write_buffer = kReplicaWriteBufferBytes;
  std::size_t logged_write_buffer = 16 << 20;
  std::size_t block_cache = kBlockCacheBytes;
  std::size_t read_index_budget = 0;
};
store_memory store_memory_for(std::size_t memory_limit, std::size_t replica_stores);

// The capacity of the block cache every store of the process shares (kBlockCacheBytes until set).
void set_block_cache_capacity(std::size_t bytes);

struct rocksdb_options {
  // A memtable's size: a store's writes reach a table file in files of this size (two at a time
  // with merge_memtables). The replica's store uses 32 MiB (sidecar/main.cc). A bulk load
  // (kv::expect_new_keys) stages its writes in stages of the same size (twice it with
  // merge_memtables), each ingested as one table file. Memtables and stages are allocated as they
  // fill: the idle footprint (P7) does not grow with it.
  std::size_t write_buffer_bytes = 16 << 20;
  int max_open_files = 128;
  // A bloom filter over the memtable's keys: for stores that look up many keys they do not hold
  // (a replica's version checks while it catches up on a store that is not empty; a bootstrap
  // stages its writes outside the memtable). It costs kMemtableBloomBytes of memory per memtable,
  // zeroed (resident) as soon as the store opens.
  bool memtable_bloom = true;
  // The write-ahead log. Off, a write lives in the memtable until a flush (by size, or
  // kv::flush) writes it to a table file: any crash, kill -9 included, rolls the store back to
  // its last flush, always a prefix of whole batches (one column family). For a store that can be
  // rebuilt from elsewhere: the replica's, whose log is the Kafka topic (sidecar/replica/README.md).
  // Closing the store flushes it.
  bool wal = true;
  // Flush two full memtables together, as one table file (up to four memtables, 64 MiB at the
  // default size, while flushes run behind): for a store loaded in bulk (the replica's while it
  // catches up), level 0 then takes half as many files of twice the size, and each compaction of
  // level 0 into level 1 (which rewrites the level-1 files it overlaps: with keys spread over the
  // whole range, all of them) comes half as often. P1: -12 to -16 % of the CPU per event
  // (docs/benchmarks.md). Without a log, what a crash rolls back grows with it (two memtables).
  bool merge_memtables = false;
  // RocksDB options in its own "name=value;name=value" form, applied over the ones above
  // (benchmark experiments: datashare-sidecar-bench apply --rocksdb). An option RocksDB does not
  // know fails the open.
  std::string overrides;
};

// Opens (creating if missing) the database in `dir`. On failure returns null and sets `error`
// to RocksDB's message.
std::unique_ptr<kv> open_rocksdb(const std::string& dir, const rocksdb_options& options, std::string& error);

}  // namespace datashare::sidecar::store
