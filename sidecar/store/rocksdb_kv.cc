#include "sidecar/store/rocksdb_kv.h"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

namespace datashare::sidecar::store {
namespace {

std::error_code to_error(const rocksdb::Status& s) {
  if (s.ok()) return {};
  if (s.IsNotFound()) return errc::not_found;
  if (s.IsCorruption()) return errc::corruption;
  if (s.IsInvalidArgument()) return errc::invalid_argument;
  return errc::io_error;
}

// One block cache for every store of the process: the sidecar's memory stays bounded however
// many policies it serves.
std::shared_ptr<rocksdb::Cache> shared_block_cache() {
  static std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(32 << 20);  // allocated as used
  return cache;
}

class rocksdb_kv final : public kv {
 public:
  rocksdb_kv(std::unique_ptr<rocksdb::DB> db, bool wal)
      : db_(std::move(db)),
        wal_(wal),
        bloom_ratio_(db_->GetOptions().memtable_prefix_bloom_size_ratio),
        bloom_ratio_now_(bloom_ratio_) {
    // Point reads (the read API's GETs, a third of its CPU): the table files are mmap'd and
    // uncompressed, so a block that is not in the block cache is used in place. Copying it into
    // the cache (a 4 KiB allocation, a copy, the cache's lock and an eviction) paid off only for
    // the few keys the small cache could hold; and its checksum (XXH3 over the whole block, 8 %
    // of a GET) was verified again on every read of it. Blocks are verified where they are
    // written (flush, compaction reads its inputs with checksums); a read trusts the file.
    point_read_.fill_cache = false;
    point_read_.verify_checksums = false;
  }

  ~rocksdb_kv() override {
    // Without a log the memtable is the only copy of the last writes: a clean stop keeps them.
    if (!wal_) (void)flush(true);
  }

  rocksdb_kv(const rocksdb_kv&) = delete;
  rocksdb_kv& operator=(const rocksdb_kv&) = delete;

  std::error_code get(std::string_view key, std::string& value) const override {
    rocksdb::PinnableSlice slice;
    auto s = db_->Get(point_read_, db_->DefaultColumnFamily(), rocksdb::Slice(key.data(), key.size()), &slice);
    if (!s.ok()) return to_error(s);
    value.assign(slice.data(), slice.size());
    return {};
  }

  void multi_get(const std::vector<std::string>& keys, std::vector<std::string>& values,
                 std::vector<std::error_code>& errors) const override {
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::PinnableSlice> pinned(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db_->MultiGet(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), keys.size(), slices.data(), pinned.data(),
                  statuses.data());
    values.resize(keys.size());  // strings kept from an earlier call are reused
    errors.assign(keys.size(), {});
    for (std::size_t i = 0; i < keys.size(); ++i) {
      errors[i] = to_error(statuses[i]);
      if (statuses[i].ok()) {
        values[i].assign(pinned[i].data(), pinned[i].size());
      } else {
        values[i].clear();
      }
    }
  }

  std::error_code write(const write_batch& batch, bool sync) override {
    // The operations go to RocksDB in key order (a key written twice keeps its order: the later
    // one wins as before; the batch is atomic, so the order of different keys means nothing to a
    // reader). The memtable's skip list starts each insert from where the previous one ended (a
    // splice kept per memtable, and per batch for concurrent writers with
    // memtable_insert_hint_per_batch): in key order it searches only the lowest levels, in a
    // replica's event order (random keys) it searched from the top, a cache miss at each level.
    // The memtable inserts were ~30 % of a bootstrap's CPU (P1, docs/benchmarks.md).
    thread_local std::vector<std::pair<std::string_view, std::uint32_t>> order;
    order.clear();
    for (std::size_t i = 0; i < batch.size(); ++i) order.emplace_back(batch[i].key, static_cast<std::uint32_t>(i));
    std::sort(order.begin(), order.end());  // by key (bytewise, RocksDB's comparator), then position
    // Sized once: the header, and per operation a tag and two length varints at most.
    rocksdb::WriteBatch wb(12 + batch.payload_bytes() + 11 * batch.size());
    for (const auto& key_at : order) {
      auto op = batch[key_at.second];
      rocksdb::Slice key(op.key.data(), op.key.size());
      if (op.is_delete) {
        wb.Delete(key);
      } else {
        wb.Put(key, rocksdb::Slice(op.value.data(), op.value.size()));
      }
    }
    rocksdb::WriteOptions wo;
    wo.memtable_insert_hint_per_batch = true;
    wo.disableWAL = !wal_;
    wo.sync = sync && wal_;
    if (auto ec = to_error(db_->Write(wo, &wb)); ec || wal_ || !sync) return ec;
    return flush(true);  // no log to sync: the memtable goes to a table file
  }

  std::error_code flush(bool wait) override {
    if (wal_) return {};
    rocksdb::FlushOptions fo;
    fo.wait = wait;
    fo.allow_write_stall = true;  // a start, not a wait for room
    return to_error(db_->Flush(fo));
  }

  void expect_new_keys(bool on) override {
    // The memtable bloom filter serves lookups of keys a memtable does not hold; a bootstrap
    // skips nearly all of those (its own filter) and paid the filter's inserts for nothing: one
    // cache miss per key, 5-10 % of the CPU per event (P1). A mutable option: it takes effect
    // with the next memtable, the current one keeps its filter.
    const double ratio = on ? 0.0 : bloom_ratio_;
    std::lock_guard lock(bloom_mu_);
    if (bloom_ratio_ == 0 || ratio == bloom_ratio_now_) return;
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", ratio);
    if (!db_->SetOptions({{"memtable_prefix_bloom_size_ratio", text}}).ok()) return;
    bloom_ratio_now_ = ratio;
    // The memtables made meanwhile have no filter, and every read of a key (a replica's GETs and
    // version checks once caught up) would search each of them until they are flushed (up to
    // store_flush_interval later): they go to a table file now, behind a new memtable with one.
    if (!on) (void)flush(false);
  }

  std::string property(const std::string& name) const override {
    std::string value;
    return db_->GetProperty(name, &value) ? value : std::string();
  }

  std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                       std::vector<entry>& out) const override {
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end.data(), end.size());
    if (!end.empty()) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
    for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid() && out.size() < limit; it->Next()) {
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
    return to_error(it->status());
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  bool wal_;
  rocksdb::ReadOptions point_read_;
  const double bloom_ratio_;  // the memtable bloom filter as opened (0: none)
  std::mutex bloom_mu_;
  double bloom_ratio_now_;  // under bloom_mu_
};

}  // namespace

std::unique_ptr<kv> open_rocksdb(const std::string& dir, const rocksdb_options& options, std::string& error) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    error = "cannot create " + dir + ": " + ec.message();
    return nullptr;
  }
  rocksdb::Options o;
  o.create_if_missing = true;
  o.write_buffer_size = options.write_buffer_bytes;
  o.max_write_buffer_number = 2;
  if (options.merge_memtables) {
    o.max_write_buffer_number = 4;
    o.min_write_buffer_number_to_merge = 2;
  }
  o.max_open_files = options.max_open_files;
  o.keep_log_file_num = 2;
  o.max_log_file_size = 1 << 20;
  o.max_background_jobs = 2;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // A bloom filter over the memtable's whole keys: the replica looks up the stored version of
  // every event, and during a bootstrap nearly all of those keys are new.
  if (options.memtable_bloom) {
    // 0.8 MiB per memtable whatever its size (RocksDB sizes it as a ratio of the write buffer):
    // ~48 bits a key in a 32 MiB memtable of ~200-byte records, plenty for a filter.
    o.memtable_whole_key_filtering = true;
    o.memtable_prefix_bloom_size_ratio =
        std::min(0.25, static_cast<double>(kMemtableBloomBytes) / static_cast<double>(options.write_buffer_bytes));
  }
  // Reads of a random key mostly miss the small block cache; uncompressed blocks then come
  // straight from the page cache instead of through snappy on every GET. Values are small JSON
  // documents: the disk cost is modest, and the sidecar's memory is what P7 bounds.
  o.compression = rocksdb::kNoCompression;
  // Table files are read through mmap: a data block missing from the block cache is then found
  // in the page cache by a memory access instead of a pread system call and a copy. A replica
  // read that missed the cache cost about twice the CPU without it (store-read of
  // datashare-sidecar-bench: 12-14 us vs 7 us per lookup, 1,000,000 keys).
  o.allow_mmap_reads = true;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = shared_block_cache();
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks stay with their table readers, outside the small block cache: in
  // it, data blocks evicted them and every version lookup of a new key read and checksummed a
  // filter block from disk again (P1 ran at 1% of kcat's rate). They take ~1.5 MB per million
  // keys.
  t.cache_index_and_filter_blocks = false;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  if (!options.overrides.empty()) {
    rocksdb::ConfigOptions co;
    co.ignore_unknown_options = false;
    rocksdb::Options tuned;
    if (auto s = rocksdb::GetOptionsFromString(co, o, options.overrides, &tuned); !s.ok()) {
      error = "rocksdb options \"" + options.overrides + "\": " + s.ToString();
      return nullptr;
    }
    o = tuned;
  }
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, dir, &raw);
  if (!s.ok()) {
    error = "cannot open rocksdb in " + dir + ": " + s.ToString();
    return nullptr;
  }
  return std::make_unique<rocksdb_kv>(std::unique_ptr<rocksdb::DB>(raw), options.wal);
}

}  // namespace datashare::sidecar::store
