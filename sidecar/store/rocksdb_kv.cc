#include "sidecar/store/rocksdb_kv.h"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "sidecar/store/staged_writes.h"

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
  static std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(kBlockCacheBytes);  // allocated as used
  return cache;
}

// A bulk load (kv::expect_new_keys): writes are staged in memory (staged_writes: sorted runs and
// a hash of their keys) instead of RocksDB's memtable, and each stage goes to the database as one
// table file (SstFileWriter, then IngestExternalFile), written by this loader's own thread while
// the next stage fills. Two stages at most, as RocksDB keeps a memtable being flushed beside the
// one written; a writer waits only when both are full.
//
// What readers and a crash see is what they saw of the memtable without a log: a write that
// returned is read (point reads look in the stages, newest first, before the database); a stage
// reaches the database as one file, atomically (so a batch is never split, and a replica's
// offsets land with their data); a crash loses what is staged, never part of it. A stage's file
// is newer than everything in the database, so once a stage exists every later write is staged
// too, until the stages are in; the end of the load (finish) holds writers back while the last
// stage goes in, and then they go to the memtable again.
class bulk_loader {
 public:
  bulk_loader(rocksdb::DB& db, std::string dir, std::size_t stage_bytes)
      : db_(db), options_(db.GetOptions()), dir_(std::move(dir)), stage_bytes_(stage_bytes) {
    // Files of a load a crash interrupted, never ingested.
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  ~bulk_loader() {
    finish();
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      if (active_ || frozen_) {
        std::cerr << "datashare-sidecar: store: "
                  << (active_ ? active_->operations() : 0) + (frozen_ ? frozen_->operations() : 0)
                  << " staged writes could not be ingested (" << ingest_error_.message()
                  << "): the store goes back to its last table file, as after a crash\n";
      }
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  bulk_loader(const bulk_loader&) = delete;
  bulk_loader& operator=(const bulk_loader&) = delete;

  // Writes from now on are staged.
  void start() {
    std::lock_guard lock(mu_);
    loading_ = true;
    if (!thread_.joinable()) thread_ = std::thread([this] { ingest_loop(); });
  }

  // The load is over: what is staged is ingested now (writers wait), later writes go to the
  // memtable. If an ingest fails, the stages stay (and are retried); writes keep being staged.
  void finish() {
    std::unique_lock lock(mu_);
    loading_ = false;
    if (!active_ && !frozen_) return;
    draining_ = true;
    want_ = next_id_;
    if (active_ && !frozen_) freeze();
    cv_.notify_all();
    cv_.wait(lock, [this] { return (!active_ && !frozen_) || ingest_error_; });
    draining_ = false;
    cv_.notify_all();
  }

  // Stages the batch if writes are being staged: then true, with `ec` set if it could not be.
  // False: the caller writes it to the database.
  bool write(const write_batch& batch, std::error_code& ec) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !draining_; });
    if (!loading_ && !active_ && !frozen_) return false;
    // A full stage waits for the one being ingested, and so does the writer (two stages are the
    // memory bound, and what a crash may lose), or it fails while ingests fail (the caller's
    // write error: a replica rewinds and tries again).
    while (active_ && frozen_ && (active_->bytes() >= stage_bytes_ || active_->full_of_runs())) {
      if (ingest_error_) {
        ec = ingest_error_;
        return true;
      }
      cv_.wait(lock);
    }
    {
      // Readers hold the shared side while they look in a stage.
      std::unique_lock readers(read_mu_);
      if (!active_) active_ = std::make_unique<staged_writes>(next_id_++);
      active_->add(batch);
    }
    staged_.store(true, std::memory_order_release);
    if ((active_->bytes() >= stage_bytes_ || active_->full_of_runs()) && !frozen_) freeze();
    ec = {};
    return true;
  }

  // Whether anything is staged (a reader that sees false finds every write in the database).
  bool any() const { return staged_.load(std::memory_order_acquire); }

  staged_writes::found find(std::string_view key, std::string& value) const {
    std::shared_lock lock(read_mu_);
    for (const staged_writes* s : {active_.get(), frozen_.get()}) {
      if (s == nullptr) continue;
      if (auto f = s->find(key, value); f != staged_writes::found::absent) return f;
    }
    return staged_writes::found::absent;
  }

  // Calls f with every staged run, oldest first, under the readers' lock (the stages stay while f
  // runs; a stage may already be in the database too, with the same operations).
  template <typename F>
  void with_runs(F&& f) const {
    std::shared_lock lock(read_mu_);
    std::vector<const write_batch*> runs;
    for (const staged_writes* s : {frozen_.get(), active_.get()}) {
      if (s == nullptr) continue;
      for (const auto& run : s->run_list()) runs.push_back(&run);
    }
    f(runs);
  }

  // What was staged before the call goes to a table file; `wait`: returns once it is there.
  std::error_code flush(bool wait) {
    std::unique_lock lock(mu_);
    if (!active_ && !frozen_) return {};
    const std::uint64_t upto = next_id_;  // every stage made before now
    want_ = std::max(want_, upto);
    if (active_ && !frozen_) freeze();
    if (!wait) return {};
    cv_.wait(lock, [&] { return ingested_ + 1 >= upto || ingest_error_ || stop_; });
    return ingested_ + 1 >= upto ? std::error_code{} : (ingest_error_ ? ingest_error_ : errc::io_error);
  }

 private:
  // Under mu_: the active stage becomes the one being ingested.
  void freeze() {
    std::unique_lock readers(read_mu_);
    frozen_ = std::move(active_);
    cv_.notify_all();
  }

  void ingest_loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || frozen_; });
      if (!frozen_) return;
      const staged_writes* stage = frozen_.get();  // nobody changes or frees it but this thread
      lock.unlock();
      std::string why;
      auto ec = ingest(*stage, why);
      lock.lock();
      if (ec) {
        if (!ingest_error_) {
          std::cerr << "datashare-sidecar: store: ingest of " << stage->operations() << " staged writes failed: " << why
                    << "; retrying every second\n";
        }
        ingest_error_ = ec;
        cv_.notify_all();
        if (cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) return;
        continue;
      }
      ingest_error_ = {};
      ingested_ = stage->id();
      {
        std::unique_lock readers(read_mu_);
        frozen_.reset();
        // The next stage goes in at once if it is full, or flushed or drained.
        if (active_ && (active_->bytes() >= stage_bytes_ || active_->full_of_runs() || active_->id() < want_)) {
          frozen_ = std::move(active_);
        }
      }
      if (!active_ && !frozen_) staged_.store(false, std::memory_order_release);
      cv_.notify_all();
    }
  }

  // The stage as one table file, ingested; on failure `why` says what failed.
  std::error_code ingest(const staged_writes& stage, std::string& why) {
    std::error_code fs_error;
    std::filesystem::create_directories(dir_, fs_error);
    if (fs_error) {
      why = "cannot create " + dir_ + ": " + fs_error.message();
      return errc::io_error;
    }
    const std::string path = dir_ + "/" + std::to_string(stage.id()) + ".sst";
    // The page cache keeps the file (point reads use it through mmap, as a flushed file's).
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(options_), options_, db_.DefaultColumnFamily(),
                                  /*invalidate_page_cache=*/false);
    auto s = writer.Open(path);
    if (s.ok()) {
      stage.for_each_last([&](std::string_view key, bool is_delete, std::string_view value) {
        if (!s.ok()) return;
        rocksdb::Slice k(key.data(), key.size());
        s = is_delete ? writer.Delete(k) : writer.Put(k, rocksdb::Slice(value.data(), value.size()));
      });
    }
    if (s.ok()) s = writer.Finish();
    if (s.ok()) {
      rocksdb::IngestExternalFileOptions o;
      o.move_files = true;            // a hard link into the database, no copy
      o.write_global_seqno = false;   // the sequence number lives in the manifest, not the file
      o.allow_blocking_flush = true;  // the memtable's older writes to a file first
      s = db_.IngestExternalFile({path}, o);
    }
    std::filesystem::remove(path, fs_error);
    if (!s.ok()) why = s.ToString();
    return to_error(s);
  }

  rocksdb::DB& db_;
  const rocksdb::Options options_;
  const std::string dir_;  // where a stage's file is written before it is ingested
  const std::size_t stage_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool loading_ = false;
  bool draining_ = false;  // finish(): writers wait
  bool stop_ = false;
  std::uint64_t next_id_ = 1;     // the next stage's id
  std::uint64_t ingested_ = 0;    // the id of the last stage ingested (stages go in in order)
  std::uint64_t want_ = 0;        // stages with an id below it are to be ingested now (flush, finish)
  std::error_code ingest_error_;  // the last ingest's, until one succeeds
  // The stages: changed under mu_ and read_mu_ both, read by readers under read_mu_ (shared).
  std::unique_ptr<staged_writes> active_, frozen_;
  mutable std::shared_mutex read_mu_;
  std::atomic<bool> staged_{false};
  std::thread thread_;
};

class rocksdb_kv final : public kv {
 public:
  rocksdb_kv(std::unique_ptr<rocksdb::DB> db, bool wal, const std::string& dir, std::size_t stage_bytes)
      : db_(std::move(db)), wal_(wal), bulk_(std::make_unique<bulk_loader>(*db_, dir + "/bulk", stage_bytes)) {
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
    bulk_.reset();  // what is staged, ingested
    // Without a log the memtable is the only copy of the last writes: a clean stop keeps them.
    (void)flush_memtables(true);
  }

  rocksdb_kv(const rocksdb_kv&) = delete;
  rocksdb_kv& operator=(const rocksdb_kv&) = delete;

  std::error_code get(std::string_view key, std::string& value) const override {
    if (bulk_->any()) {
      switch (bulk_->find(key, value)) {
        case staged_writes::found::value:
          return {};
        case staged_writes::found::deleted:
          return errc::not_found;
        case staged_writes::found::absent:
          break;
      }
    }
    rocksdb::PinnableSlice slice;
    auto s = db_->Get(point_read_, db_->DefaultColumnFamily(), rocksdb::Slice(key.data(), key.size()), &slice);
    if (!s.ok()) return to_error(s);
    value.assign(slice.data(), slice.size());
    return {};
  }

  void multi_get(const std::vector<std::string>& keys, std::vector<std::string>& values,
                 std::vector<std::error_code>& errors) const override {
    values.resize(keys.size());  // strings kept from an earlier call are reused
    errors.assign(keys.size(), {});
    // The keys a stage answers; the rest in one MultiGet.
    thread_local std::vector<std::size_t> rest;
    rest.clear();
    const bool staged = bulk_->any();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto f = staged ? bulk_->find(keys[i], values[i]) : staged_writes::found::absent;
      if (f == staged_writes::found::deleted) errors[i] = errc::not_found;
      if (f == staged_writes::found::absent) rest.push_back(i);
    }
    if (rest.empty()) return;
    std::vector<rocksdb::Slice> slices;
    slices.reserve(rest.size());
    for (auto i : rest) slices.emplace_back(keys[i]);
    std::vector<rocksdb::PinnableSlice> pinned(rest.size());
    std::vector<rocksdb::Status> statuses(rest.size());
    db_->MultiGet(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), rest.size(), slices.data(), pinned.data(),
                  statuses.data());
    for (std::size_t j = 0; j < rest.size(); ++j) {
      const std::size_t i = rest[j];
      errors[i] = to_error(statuses[j]);
      if (statuses[j].ok()) {
        values[i].assign(pinned[j].data(), pinned[j].size());
      } else {
        values[i].clear();
      }
    }
  }

  std::error_code write(const write_batch& batch, bool sync) override {
    if (batch.empty()) return {};
    if (std::error_code ec; bulk_->write(batch, ec)) {
      if (ec || !sync) return ec;
      return flush(true);
    }
    // The operations go to RocksDB in key order (a key written twice keeps its order: the later
    // one wins as before; the batch is atomic, so the order of different keys means nothing to a
    // reader). The memtable's skip list starts each insert from where the previous one ended (a
    // splice kept per memtable, and per batch for concurrent writers with
    // memtable_insert_hint_per_batch): in key order it searches only the lowest levels, in a
    // replica's event order (random keys) it searched from the top, a cache miss at each level.
    // The memtable inserts were ~30 % of a bootstrap's CPU (P1, docs/benchmarks.md).
    thread_local std::vector<std::uint32_t> order;
    sort_by_key(batch, order);
    // Sized once: the header, and per operation a tag and two length varints at most.
    rocksdb::WriteBatch wb(12 + batch.payload_bytes() + 11 * batch.size());
    for (std::uint32_t at : order) {
      auto op = batch[at];
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
    if (auto ec = bulk_->flush(wait)) return ec;
    return flush_memtables(wait);
  }

  // A bulk load: writes are staged and ingested as table files (bulk_loader) instead of going
  // through the memtable.
  void expect_new_keys(bool on) override {
    if (on) {
      bulk_->start();
    } else {
      bulk_->finish();
    }
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
    // The database merged with the staged runs of a bulk load, if any (a run's operation over the
    // database's, a later run's over an earlier one's; a staged delete hides the key). Runs exist
    // only while a copy bootstraps (not ready yet, few scans), so a plain merge: each step looks
    // at every source; without runs it is the database's iteration.
    std::error_code ec;
    bulk_->with_runs([&](const std::vector<const write_batch*>& runs) {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));  // after the stages are held
      it->Seek(rocksdb::Slice(begin.data(), begin.size()));
      std::vector<std::size_t> at(runs.size());
      for (std::size_t r = 0; r < runs.size(); ++r) {
        const write_batch& run = *runs[r];
        std::size_t lo = 0, hi = run.size();  // the first key >= begin
        while (lo < hi) {
          std::size_t mid = (lo + hi) / 2;
          if (run[mid].key < begin) {
            lo = mid + 1;
          } else {
            hi = mid;
          }
        }
        at[r] = lo;
      }
      auto run_key = [&](std::size_t r, std::string_view& key) {
        if (at[r] >= runs[r]->size()) return false;
        key = (*runs[r])[at[r]].key;
        return end.empty() || key < end;
      };
      while (out.size() < limit) {
        std::string_view least;
        bool any = it->Valid();
        if (any) least = std::string_view(it->key().data(), it->key().size());
        for (std::size_t r = 0; r < runs.size(); ++r) {
          std::string_view k;
          if (run_key(r, k) && (!any || k < least)) {
            least = k;
            any = true;
          }
        }
        if (!any) break;
        // The newest source holding the least key decides; every source moves past it.
        std::string key(least);
        std::optional<write_batch::op> staged;
        for (std::size_t r = 0; r < runs.size(); ++r) {
          std::string_view k;
          if (run_key(r, k) && k == key) {
            staged = (*runs[r])[at[r]];  // later runs are newer: the last one found wins
            ++at[r];
          }
        }
        std::string value;
        bool from_db = false;
        if (it->Valid() && it->key() == rocksdb::Slice(key)) {
          if (!staged) {
            value = it->value().ToString();
            from_db = true;
          }
          it->Next();
        }
        if (staged && !staged->is_delete) {
          out.emplace_back(std::move(key), std::string(staged->value));
        } else if (from_db) {
          out.emplace_back(std::move(key), std::move(value));
        }
      }
      ec = to_error(it->status());
    });
    return ec;
  }

 private:
  // Without a log, the memtables to a table file (the only copy of their writes otherwise).
  std::error_code flush_memtables(bool wait) {
    if (wal_) return {};
    rocksdb::FlushOptions fo;
    fo.wait = wait;
    fo.allow_write_stall = true;  // a start, not a wait for room
    return to_error(db_->Flush(fo));
  }

  std::unique_ptr<rocksdb::DB> db_;
  bool wal_;
  rocksdb::ReadOptions point_read_;
  std::unique_ptr<bulk_loader> bulk_;
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
  // every event, and many of those keys are new to the store.
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
  const std::size_t stage_bytes = options.write_buffer_bytes * (options.merge_memtables ? 2 : 1);
  return std::make_unique<rocksdb_kv>(std::unique_ptr<rocksdb::DB>(raw), options.wal, dir, stage_bytes);
}

store_memory store_memory_for(std::size_t memory_limit, std::size_t replica_stores) {
  store_memory m;
  if (memory_limit == 0) return m;  // unknown: the defaults
  constexpr std::size_t kMin = std::size_t{2} << 20;
  const std::size_t per_replica = memory_limit / 4 / std::max<std::size_t>(replica_stores, 1) / 4;
  m.replica_write_buffer = std::clamp(per_replica, kMin, kReplicaWriteBufferBytes);
  m.logged_write_buffer = std::clamp(memory_limit / 16, kMin, m.logged_write_buffer);
  m.block_cache = std::clamp(memory_limit / 16, std::size_t{4} << 20, kBlockCacheBytes);
  m.read_index_budget = memory_limit / 4;
  return m;
}

void set_block_cache_capacity(std::size_t bytes) {
  shared_block_cache()->SetCapacity(bytes);
}

}  // namespace datashare::sidecar::store
