#pragma once
// store::staged_writes — writes held in memory, in runs sorted by key, until they go to the store
// together as one table file (rocksdb_kv's bulk load, kv::expect_new_keys). A replica's bootstrap
// writes a million random keys; through RocksDB's memtable each insert searched a skip list of
// ~150,000 nodes (a cache miss per level) and the flush then walked it again: a quarter of the
// bootstrap's CPU (P1, docs/benchmarks.md). Here a batch is sorted once, copied as one run, and
// its keys entered into an open-addressing hash (one probe each) that answers point lookups; the
// table file is written by merging the runs, which are each already in order.
//
// Not thread-safe: the owner (rocksdb_kv) serialises add() against everything else; find(),
// for_each_last() and the accessors may run concurrently with each other.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "sidecar/store/kv.h"

namespace datashare::sidecar::store {

class staged_writes {
 public:
  explicit staged_writes(std::uint64_t id = 0) : id_(id) {}

  // Adds the batch: its operations in key order, only the last of a key's own (a batch's later
  // operation wins, as in kv::write), as one run (more for a batch of over 65,535 keys).
  void add(const write_batch& batch);

  enum class found { absent, value, deleted };
  // The key's last staged operation: its value, or `deleted` for a delete (which hides whatever
  // the store below holds), or `absent` when no staged operation touched it.
  found find(std::string_view key, std::string& value) const;

  // Every staged key once, in key order, with its last operation: f(key, is_delete, value).
  void for_each_last(const std::function<void(std::string_view, bool, std::string_view)>& f) const;

  bool empty() const { return keys_ == 0; }
  // An estimate of the memory held: the keys and values, plus the runs' and hash's bookkeeping.
  std::size_t bytes() const { return bytes_ + slots_.size() * sizeof(std::uint64_t); }
  std::size_t runs() const { return runs_.size(); }
  // The runs, oldest first: each in key order, no key twice (a later run's operation wins).
  const std::vector<write_batch>& run_list() const { return runs_; }
  std::size_t operations() const { return keys_; }
  std::uint64_t id() const { return id_; }
  // Runs are numbered in 16 bits: a stage is full at this many (a stage of small batches).
  static constexpr std::size_t kMaxRuns = 65535;
  bool full_of_runs() const { return runs_.size() >= kMaxRuns; }

 private:
  void index(std::uint32_t run, std::uint32_t op, std::uint32_t tag);
  void grow();
  std::size_t probe(std::uint32_t tag, std::string_view key, bool& hit) const;

  std::uint64_t id_;
  std::vector<write_batch> runs_;  // each in key order, no key twice
  // Slots: tag (32 bits of the key's hash) << 32 | (run + 1) << 16 | operation; 0 is empty.
  std::vector<std::uint64_t> slots_;
  std::size_t used_ = 0;  // occupied slots: distinct keys
  std::size_t keys_ = 0;  // operations in the runs
  std::size_t bytes_ = 0;
};

}  // namespace datashare::sidecar::store
