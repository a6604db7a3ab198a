// The same contract tests for both store::kv implementations.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "sidecar/store/group_writer.h"
#include "sidecar/store/memory_kv.h"
#include "sidecar/store/read_index.h"
#include "sidecar/store/rocksdb_kv.h"
#include "sidecar/store/staged_writes.h"

namespace datashare::sidecar::store {
namespace {

// What a model store holds after a batch: each key's last value, or nullopt once deleted.
using model = std::map<std::string, std::optional<std::string>>;

// Adds to the batch a delete of `key` one time in `delete_one_in`, else a put of `value`, and
// records it in the model.
void put_or_delete(write_batch& b, model& want, const std::string& key, std::mt19937& rng, unsigned delete_one_in,
                   const std::string& value) {
  if (rng() % delete_one_in == 0) {
    b.del(key);
    want[key] = std::nullopt;
  } else {
    b.put(key, value);
    want[key] = value;
  }
}

std::string index_state(const kv& k) {
  return k.property("datashare.read-index.state");
}

// Waits for a read index's build (a scan on its own thread) to end: ready, or dropped.
void await_build(const kv& index) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (index_state(index) == "building" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_NE(index_state(index), "building");
}

// A read index over `inner`, its build awaited.
std::unique_ptr<kv> indexed(std::unique_ptr<kv> inner, const std::string& prefix, read_index_options ro = {}) {
  auto out = with_read_index(std::move(inner), prefix, std::move(ro));
  await_build(*out);
  return out;
}

class kv_contract_test : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      kv_ = std::make_unique<memory_kv>();
      return;
    }
    dir_ = std::filesystem::temp_directory_path() /
           ("kv_test." + std::to_string(::getpid()) + "." + std::to_string(std::random_device()()));
    open();
  }
  // "rocksdb-indexed": the replica's store with `readIndex: memory`, every key in the hash.
  // "rocksdb-index-budget": `readIndex: auto` with a budget of 4 KiB, which the tests' writes
  // exceed (the index dropped in the middle of a test, reads going on from RocksDB).
  void open() {
    std::string error;
    kv_ = open_rocksdb(dir_.string(), options(), error);
    ASSERT_TRUE(kv_) << error;
    if (GetParam() == "rocksdb-bulk") kv_->expect_new_keys(true);
    if (GetParam() == "rocksdb-indexed" || GetParam() == "rocksdb-index-budget") {
      read_index_options ro;
      if (GetParam() == "rocksdb-index-budget") ro.budget = std::make_shared<memory_budget>(4096);
      kv_ = indexed(std::move(kv_), "", ro);
    }
  }
  // "rocksdb-nowal": the replica's store, without a write-ahead log. "rocksdb-bulk": the same
  // during a bootstrap (writes staged and ingested as table files), with stages of 64 KiB so that
  // the tests' writes go through several.
  rocksdb_options options() const {
    rocksdb_options o;
    o.wal = GetParam() == "memory" || GetParam() == "rocksdb";
    if (GetParam() == "rocksdb-bulk") o.write_buffer_bytes = 64 << 10;
    return o;
  }
  void TearDown() override {
    kv_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void reopen() {
    if (dir_.empty()) return;
    kv_.reset();
    open();
  }

  std::filesystem::path dir_;
  std::unique_ptr<kv> kv_;
};

TEST_P(kv_contract_test, GetPutDelete) {
  std::string v;
  EXPECT_EQ(kv_->get("a", v), errc::not_found);
  write_batch b;
  b.put("a", "1");
  b.put("b", std::string("\0x", 2));
  ASSERT_FALSE(kv_->write(b, true));
  ASSERT_FALSE(kv_->get("a", v));
  EXPECT_EQ(v, "1");
  ASSERT_FALSE(kv_->get("b", v));
  EXPECT_EQ(v, std::string("\0x", 2));
  b.clear();
  b.del("a");
  b.put("b", "2");
  ASSERT_FALSE(kv_->write(b, false));
  EXPECT_EQ(kv_->get("a", v), errc::not_found);
  ASSERT_FALSE(kv_->get("b", v));
  EXPECT_EQ(v, "2");
}

TEST_P(kv_contract_test, LaterOpsInABatchWin) {
  write_batch b;
  b.put("k", "1");
  b.del("k");
  b.put("k", "3");
  ASSERT_FALSE(kv_->write(b, false));
  std::string v;
  ASSERT_FALSE(kv_->get("k", v));
  EXPECT_EQ(v, "3");
}

// A batch of many keys in no order, most of them written several times (puts and deletes): each
// key ends as its last operation says. The RocksDB store hands a batch to RocksDB in key order
// (its memtable inserts are cheaper so); a key's own operations must keep theirs.
TEST_P(kv_contract_test, ABatchInAnyKeyOrderKeepsEachKeysLastOperation) {
  std::mt19937 rng(7);
  model want;
  write_batch b;
  for (int i = 0; i < 3000; ++i) {
    put_or_delete(b, want, "k" + std::to_string(rng() % 400), rng, 4, "v" + std::to_string(i));
  }
  ASSERT_FALSE(kv_->write(b, false));
  for (const auto& [key, value] : want) {
    std::string v;
    if (value) {
      ASSERT_FALSE(kv_->get(key, v)) << key;
      EXPECT_EQ(v, *value) << key;
    } else {
      EXPECT_EQ(kv_->get(key, v), errc::not_found) << key;
    }
  }
}

TEST_P(kv_contract_test, ScansInKeyOrderWithinBoundsAndLimit) {
  write_batch b;
  for (const char* k : {"d/c", "d/a", "d/b", "o/1", "c"}) b.put(k, k);
  ASSERT_FALSE(kv_->write(b, false));
  std::vector<entry> out;
  ASSERT_FALSE(kv_->scan("d/", "d0", 10, out));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first, "d/a");
  EXPECT_EQ(out[2].first, "d/c");
  out.clear();
  ASSERT_FALSE(kv_->scan("d/b", "", 2, out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].first, "d/b");
  EXPECT_EQ(out[1].first, "d/c");
}

TEST_P(kv_contract_test, MultiGetAnswersEachKey) {
  write_batch b;
  b.put("a", "1");
  b.put("c", "3");
  ASSERT_FALSE(kv_->write(b, false));
  std::vector<std::string> values;
  std::vector<std::error_code> errors;
  kv_->multi_get({"c", "b", "a"}, values, errors);
  ASSERT_EQ(values.size(), 3u);
  EXPECT_FALSE(errors[0]);
  EXPECT_EQ(values[0], "3");
  EXPECT_EQ(errors[1], errc::not_found);
  EXPECT_FALSE(errors[2]);
  EXPECT_EQ(values[2], "1");
  kv_->multi_get({}, values, errors);
  EXPECT_TRUE(values.empty());
}

TEST_P(kv_contract_test, SurvivesReopen) {
  write_batch b;
  b.put("x", "y");
  ASSERT_FALSE(kv_->write(b, true));
  reopen();
  std::string v;
  ASSERT_FALSE(kv_->get("x", v));
  EXPECT_EQ(v, "y");
}

TEST_P(kv_contract_test, ACleanCloseKeepsUnsyncedWrites) {
  // Without a log too: closing the store flushes its memtable.
  write_batch b;
  for (int i = 0; i < 100; ++i) b.put("k" + std::to_string(i), "v" + std::to_string(i));
  ASSERT_FALSE(kv_->write(b, false));
  ASSERT_FALSE(kv_->flush(false));
  write_batch c;
  c.put("last", "z");
  ASSERT_FALSE(kv_->write(c, false));
  reopen();
  std::string v;
  ASSERT_FALSE(kv_->get("k99", v));
  EXPECT_EQ(v, "v99");
  ASSERT_FALSE(kv_->get("last", v));
  EXPECT_EQ(v, "z");
}

TEST_P(kv_contract_test, ConcurrentReadersAndOneWriter) {
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) {
      write_batch b;
      b.put("k" + std::to_string(i % 50), std::to_string(i));
      b.put("n", std::to_string(i));
      ASSERT_FALSE(kv_->write(b, false));
    }
    done = true;
  });
  std::thread reader([&] {
    std::string v;
    std::vector<entry> out;
    while (!done) {
      (void)kv_->get("n", v);
      out.clear();
      ASSERT_FALSE(kv_->scan("k", "l", 10, out));
    }
  });
  writer.join();
  reader.join();
  std::string v;
  ASSERT_FALSE(kv_->get("n", v));
  EXPECT_EQ(v, "1999");
}

TEST_P(kv_contract_test, GroupWriterAppliesEveryBatchInOrderWithSharedSyncs) {
  constexpr int kBatches = 300;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, failed = 0;
  {
    group_writer w(*kv_);
    for (int i = 0; i < kBatches; ++i) {
      write_batch b;
      b.put("k" + std::to_string(i % 10), std::to_string(i));  // later batches win
      b.put("n" + std::to_string(i), "x");
      w.write(std::move(b), [&](std::error_code ec) {
        std::lock_guard lock(mu);
        if (ec) ++failed;
        ++done;
        cv.notify_all();
      });
    }
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == kBatches; }));
    EXPECT_EQ(failed, 0);
    EXPECT_LE(w.groups(), static_cast<std::uint64_t>(kBatches));
  }
  std::string v;
  for (int k = 0; k < 10; ++k) {
    ASSERT_FALSE(kv_->get("k" + std::to_string(k), v));
    EXPECT_EQ(v, std::to_string(kBatches - 10 + k));
  }
  ASSERT_FALSE(kv_->get("n" + std::to_string(kBatches - 1), v));
}

TEST(GroupWriterTest, ABatchWithoutSyncNeverCostsAnFsyncOfItsOwn) {
  memory_kv kv;
  std::promise<std::error_code> unsynced, synced;
  {
    group_writer w(kv);
    write_batch a;
    a.put("a", "1");
    w.write(
        std::move(a), [&](std::error_code ec) { unsynced.set_value(ec); }, false);
    EXPECT_FALSE(unsynced.get_future().get());
    EXPECT_EQ(w.groups(), 0u);
    EXPECT_EQ(kv.synced_writes(), 0u);
    write_batch b;
    b.put("b", "2");
    w.write(std::move(b), [&](std::error_code ec) { synced.set_value(ec); });
    EXPECT_FALSE(synced.get_future().get());
    EXPECT_EQ(w.groups(), 1u);
    EXPECT_EQ(kv.synced_writes(), 1u);
  }
  EXPECT_EQ(kv.size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(impls, kv_contract_test,
                         ::testing::Values("memory", "rocksdb", "rocksdb-nowal", "rocksdb-indexed",
                                           "rocksdb-index-budget", "rocksdb-bulk"));

TEST(MemoryKvTest, InjectedFailuresChangeNothing) {
  memory_kv kv;
  kv.fail_next_writes(1);
  write_batch b;
  b.put("a", "1");
  EXPECT_EQ(kv.write(b, true), errc::injected_failure);
  EXPECT_EQ(kv.size(), 0u);
  EXPECT_FALSE(kv.write(b, true));
  EXPECT_EQ(kv.size(), 1u);
  EXPECT_EQ(kv.synced_writes(), 1u);
}

TEST(GroupWriterTest, AFailedGroupFailsItsCallbacksAndChangesNothing) {
  memory_kv kv;
  kv.fail_next_writes(1);
  std::promise<std::error_code> p;
  {
    group_writer w(kv);
    write_batch b;
    b.put("a", "1");
    w.write(std::move(b), [&p](std::error_code ec) { p.set_value(ec); });
    EXPECT_EQ(p.get_future().get(), errc::injected_failure);
  }
  EXPECT_EQ(kv.size(), 0u);
}

// What staged_writes answers for a key: its value, "<deleted>", or "<absent>".
std::string staged(const staged_writes& s, std::string_view key) {
  std::string v;
  switch (s.find(key, v)) {
    case staged_writes::found::value:
      return v;
    case staged_writes::found::deleted:
      return "<deleted>";
    case staged_writes::found::absent:
      break;
  }
  return "<absent>";
}

TEST(StagedWritesTest, TheLastOperationOfAKeyWinsWithinAndAcrossBatches) {
  staged_writes s;
  EXPECT_EQ(staged(s, "a"), "<absent>");
  write_batch b;
  b.put("b", "1");
  b.put("a", "1");
  b.del("b");
  b.put("c", "1");
  s.add(b);
  EXPECT_EQ(staged(s, "a"), "1");
  EXPECT_EQ(staged(s, "b"), "<deleted>");
  b.clear();
  b.put("b", "2");
  b.del("c");
  b.put("c", "2");
  b.del("a");
  s.add(b);
  EXPECT_EQ(staged(s, "a"), "<deleted>");
  EXPECT_EQ(staged(s, "b"), "2");
  EXPECT_EQ(staged(s, "c"), "2");
  EXPECT_EQ(staged(s, "d"), "<absent>");
  std::vector<std::string> merged;
  s.for_each_last([&](std::string_view key, bool is_delete, std::string_view value) {
    merged.push_back(std::string(key) + "=" + (is_delete ? std::string("<deleted>") : std::string(value)));
  });
  EXPECT_EQ(merged, (std::vector<std::string>{"a=<deleted>", "b=2", "c=2"}));
}

// Many batches of random keys (the hash grows many times), one of them bigger than a run holds:
// every key answers its last operation, and the merge passes each key once, in order, with it.
TEST(StagedWritesTest, AgreesWithAModelOverManyRunsAndAnOversizedBatch) {
  std::mt19937 rng(11);
  model want;
  staged_writes s;
  auto add_batch = [&](int ops, int key_space) {
    write_batch b;
    for (int i = 0; i < ops; ++i) {
      put_or_delete(b, want, "k" + std::to_string(rng() % key_space), rng, 5, std::to_string(rng()));
    }
    s.add(b);
  };
  for (int i = 0; i < 300; ++i) add_batch(1 + static_cast<int>(rng() % 200), 5000);
  add_batch(150000, 200000);  // more distinct keys than one run's 65,535
  EXPECT_GT(s.runs(), 301u);
  for (const auto& [key, value] : want) ASSERT_EQ(staged(s, key), value ? *value : "<deleted>") << key;
  EXPECT_EQ(staged(s, "k-none"), "<absent>");
  auto it = want.begin();
  std::size_t seen = 0;
  s.for_each_last([&](std::string_view key, bool is_delete, std::string_view value) {
    ASSERT_NE(it, want.end());
    ASSERT_EQ(key, it->first);
    ASSERT_EQ(is_delete, !it->second.has_value()) << key;
    if (!is_delete) {
      ASSERT_EQ(value, *it->second) << key;
    }
    ++it;
    ++seen;
  });
  EXPECT_EQ(seen, want.size());
}

// Keys that the comparison words cannot tell apart (equal words: one key a prefix of another,
// zero bytes, differences past the word) and a batch whose keys share nothing: the order is
// still bytewise, as std::map's, in the sort and in the merge of runs.
TEST(StagedWritesTest, KeysEqualInTheirComparisonWordStillSortBytewise) {
  const std::string z("\0", 1);
  std::vector<std::string> keys = {"dkey:0000000012345678a",
                                   "dkey:0000000012345678",
                                   "dkey:0000000012345678" + z,
                                   "dkey:0000000012345679",
                                   "dkey:00000000",
                                   "dkey:00000000" + z + z,
                                   "dkey:0000000012345678b",
                                   "e",
                                   std::string(),
                                   z,
                                   "dkey:1"};
  std::mt19937 rng(2);
  staged_writes s;
  std::map<std::string, std::string> want;
  for (int round = 0; round < 20; ++round) {
    std::shuffle(keys.begin(), keys.end(), rng);
    write_batch b;
    for (std::size_t i = 0; i < keys.size(); i += 1 + rng() % 2) {
      b.put(keys[i], std::to_string(round));
      want[keys[i]] = std::to_string(round);
    }
    std::vector<std::uint32_t> order;
    sort_by_key(b, order);
    for (std::size_t i = 1; i < order.size(); ++i) ASSERT_LT(b[order[i - 1]].key, b[order[i]].key);
    s.add(b);
  }
  std::vector<std::pair<std::string, std::string>> merged;
  s.for_each_last([&](std::string_view key, bool, std::string_view value) {
    merged.emplace_back(std::string(key), std::string(value));
  });
  EXPECT_EQ(merged, (std::vector<std::pair<std::string, std::string>>(want.begin(), want.end())));
}

// Every key of the model reads as the model says (get).
void expect_gets(const kv& store, const model& want, const char* when) {
  for (const auto& [key, value] : want) {
    std::string v;
    auto ec = store.get(key, v);
    if (value) {
      ASSERT_FALSE(ec) << when << ": " << key;
      ASSERT_EQ(v, *value) << when << ": " << key;
    } else {
      ASSERT_EQ(ec, errc::not_found) << when << ": " << key;
    }
  }
}

// A replica's store (no log) in a fresh directory, with stages (memtables) of `stage_bytes`, for
// the bulk load's tests.
class bulk_load_test : public ::testing::Test {
 protected:
  void open(const std::string& name, std::size_t stage_bytes) {
    dir_ = std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    o_.wal = false;
    o_.write_buffer_bytes = stage_bytes;
    reopen();
  }
  void reopen() {
    kv_.reset();
    std::string error;
    kv_ = open_rocksdb(dir_.string(), o_, error);
    ASSERT_TRUE(kv_) << error;
  }
  void TearDown() override {
    kv_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  rocksdb_options o_;
  std::unique_ptr<kv> kv_;
};

// A bulk load (expect_new_keys: a replica's bootstrap) with stages of 64 KiB: the writes go to
// table files by ingestion, never through the memtable; reads see each write as it returns, before
// and after its stage goes in; after the load, writes go to the memtable again, newer than every
// ingested one; all of it survives a reopen.
TEST_F(bulk_load_test, ABulkLoadIngestsTableFilesAndReadsSeeEveryWrite) {
  open("kv_test.bulk", 64 << 10);
  auto& kv = kv_;
  const auto& dir = dir_;
  model want;
  auto check = [&](const char* when) {
    expect_gets(*kv, want, when);
    std::vector<std::string> keys;
    for (const auto& entry : want) keys.push_back(entry.first);
    std::vector<std::string> values;
    std::vector<std::error_code> errors;
    kv->multi_get(keys, values, errors);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      ASSERT_EQ(errors[i] ? std::string("<absent>") : values[i], want[keys[i]].value_or("<absent>"))
          << when << ": " << keys[i];
    }
    // Scans in pages (the read API's): staged puts over stored values, staged deletes hiding
    // stored keys, bounds and limits across the stages and the table files.
    std::vector<entry> live, got;
    for (const auto& [key, value] : want) {
      if (value) live.emplace_back(key, *value);
    }
    std::string from = "d";
    for (;;) {
      std::vector<entry> page;
      ASSERT_FALSE(kv->scan(from, "e", 333, page)) << when;
      got.insert(got.end(), page.begin(), page.end());
      if (page.size() < 333) break;
      from = page.back().first + std::string(1, '\0');
    }
    ASSERT_EQ(got, live) << when;
  };
  std::mt19937 rng(3);
  auto write_some = [&](int batches) {
    for (int n = 0; n < batches; ++n) {
      write_batch b;
      for (int i = 0; i < 100; ++i) {
        put_or_delete(b, want, "d" + std::to_string(rng() % 4000), rng, 8,
                      std::string(100, static_cast<char>('a' + rng() % 26)));
      }
      ASSERT_FALSE(kv->write(b, false));
    }
  };
  write_some(10);  // before the load: in the memtable
  kv->expect_new_keys(true);
  write_some(200);  // ~2.3 MB: dozens of 64 KiB stages
  check("during the load");
  EXPECT_EQ(kv->property("rocksdb.num-entries-active-mem-table"), "0");
  auto files = [&] {
    return std::stoull(kv->property("rocksdb.num-files-at-level0")) +
           std::stoull(kv->property("rocksdb.num-files-at-level1"));
  };
  EXPECT_GT(files(), 0u);
  EXPECT_TRUE(std::filesystem::is_empty(dir / "bulk"));  // an ingested file is moved, not copied
  kv->expect_new_keys(false);
  check("after the load");
  write_some(5);
  EXPECT_NE(kv->property("rocksdb.num-entries-active-mem-table"), "0");
  check("after the load's writes");
  reopen();
  check("after a reopen");
}

// An ingest that fails (here: the staging directory cannot be made) loses nothing: the stage stays
// and is read, writes go on until two stages are full and then fail (a replica rewinds and tries
// again), and once the cause is gone the retried ingest puts it all in the database.
TEST_F(bulk_load_test, AFailedIngestKeepsItsStageAndIsRetried) {
  open("kv_test.bulkfail", 32 << 10);
  auto& kv = kv_;
  const auto& dir = dir_;
  kv->expect_new_keys(true);
  { std::ofstream(dir / "bulk") << "not a directory"; }
  model want;
  std::mt19937 rng(9);
  std::error_code failed;
  for (int n = 0; n < 100 && !failed; ++n) {
    write_batch b;
    model batch;
    for (int i = 0; i < 40; ++i)
      put_or_delete(b, batch, "d" + std::to_string(rng() % 5000), rng, 10, std::string(100, 'v'));
    failed = kv->write(b, false);
    if (!failed) {
      for (auto& [key, value] : batch) want[key] = value;
    }
  }
  ASSERT_EQ(failed, errc::io_error) << "two full stages with the ingest failing";
  auto check = [&](const char* when) { expect_gets(*kv, want, when); };
  check("while the ingest fails");
  EXPECT_EQ(kv->property("rocksdb.total-sst-files-size"), "0");
  std::filesystem::remove(dir / "bulk");
  // The loader retries every second; a flush reports the failure until a retry has succeeded.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (kv->flush(true) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(kv->flush(true));
  EXPECT_NE(kv->property("rocksdb.total-sst-files-size"), "0");
  check("after the retried ingest");
  kv->expect_new_keys(false);
  reopen();
  check("after a reopen");
}

// Readers while writers stage and stages are ingested (run under TSan in the test suite): a key
// whose write returned is found by every later read, whichever of the two stages or the table
// files holds it at that moment, also while the load ends.
TEST_F(bulk_load_test, ReadersDuringABulkLoadFindEveryWrittenKey) {
  open("kv_test.bulkread", 32 << 10);
  auto& kv = kv_;
  kv->expect_new_keys(true);
  // Three writers (a replica's workers: each its own keys), a reader of point GETs and one of
  // multi_get (a worker's version lookups), and the end of the load while the readers still read.
  constexpr int kWriters = 3, kBatches = 200, kPerBatch = 50;
  std::atomic<int> written[kWriters] = {};  // each writer's batches whose write returned
  std::atomic<int> misses{0};
  std::atomic<bool> writers_done{false};
  auto key = [](int w, int n) { return "k" + std::to_string(w) + "/" + std::to_string(n); };
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int n = 0; n < kBatches; ++n) {
        write_batch b;
        for (int i = 0; i < kPerBatch; ++i) b.put(key(w, n * kPerBatch + i), std::string(80, 'x'));
        if (kv->write(b, false)) ++misses;
        written[w].store(n + 1, std::memory_order_release);
      }
    });
  }
  auto random_written_key = [&](std::mt19937& rng, std::string& out) {
    int w = static_cast<int>(rng() % kWriters);
    int done = written[w].load(std::memory_order_acquire);
    if (done == 0) return false;
    out = key(w, static_cast<int>(rng() % (done * kPerBatch)));
    return true;
  };
  threads.emplace_back([&] {
    std::mt19937 rng(5);
    std::string k, v;
    while (!writers_done.load()) {
      if (random_written_key(rng, k) && kv->get(k, v)) ++misses;
    }
  });
  threads.emplace_back([&] {
    std::mt19937 rng(6);
    std::vector<std::string> keys(8), values;
    std::vector<std::error_code> errors;
    while (!writers_done.load()) {
      keys.clear();
      std::string k;
      for (int i = 0; i < 8; ++i) {
        if (random_written_key(rng, k)) keys.push_back(k);
      }
      kv->multi_get(keys, values, errors);
      for (const auto& ec : errors) {
        if (ec) ++misses;
      }
    }
  });
  for (int w = 0; w < kWriters; ++w) threads[static_cast<std::size_t>(w)].join();
  kv->expect_new_keys(false);  // the rest ingested while the readers read
  writers_done = true;
  for (std::size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(misses.load(), 0);
  std::string v;
  for (int w = 0; w < kWriters; ++w) EXPECT_FALSE(kv->get(key(w, kBatches * kPerBatch - 1), v)) << w;
}

TEST(RocksdbKvTest, ReportsAnUnusableDirectory) {
  std::string error;
  auto kv = open_rocksdb("/proc/version/not-a-dir", {}, error);
  EXPECT_FALSE(kv);
  EXPECT_NE(error.find("/proc/version/not-a-dir"), std::string::npos) << error;
}

// The read index against the store it indexes: after every kind of write, and loaded again at
// open, each key reads the same through the index as from the store alone.
class read_index_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("read_index_test." + std::to_string(::getpid()) + "." + std::to_string(std::random_device()()));
    open();
  }
  void TearDown() override {
    kv_.reset();
    std::filesystem::remove_all(dir_);
  }
  void open(read_index_options ro = {}) {
    kv_.reset();
    std::string error;
    rocksdb_options o;
    o.wal = false;  // the replica's store
    auto raw = open_rocksdb(dir_.string(), o, error);
    ASSERT_TRUE(raw) << error;
    inner_ = raw.get();
    kv_ = indexed(std::move(raw), "d", std::move(ro));
  }
  // Every key of `keys` reads the same through the index and from RocksDB alone.
  void expect_agreement(const std::vector<std::string>& keys) {
    for (const auto& k : keys) {
      std::string a;
      std::string b;
      auto ea = kv_->get(k, a);
      auto eb = inner_->get(k, b);
      EXPECT_EQ(ea, eb) << k;
      EXPECT_EQ(a, b) << k;
    }
    if (index_state(*kv_) == "dropped") {
      EXPECT_EQ(kv_->property("datashare.read-index.entries"), "0");
      EXPECT_EQ(kv_->property("datashare.read-index.bytes"), "0");
      return;
    }
    std::vector<entry> all;
    ASSERT_FALSE(inner_->scan("d", "e", 1 << 20, all));
    EXPECT_EQ(kv_->property("datashare.read-index.entries"), std::to_string(all.size()));
  }

  std::filesystem::path dir_;
  kv* inner_ = nullptr;  // owned by kv_
  std::unique_ptr<kv> kv_;
};

TEST_F(read_index_test, AgreesWithTheStoreAfterPutsDeletesAndReopen) {
  std::vector<std::string> keys;
  for (int i = 0; i < 3000; ++i) keys.push_back("d" + std::to_string(i));
  keys.push_back("o1");
  keys.push_back("dmissing");
  write_batch b;
  for (int i = 0; i < 3000; ++i) b.put(keys[i], std::string(static_cast<std::size_t>(i % 300), 'v'));
  b.put("o1", "offset");
  ASSERT_FALSE(kv_->write(b, false));
  expect_agreement(keys);
  // Overwrites, deletes (the replica's tombstones are puts; a real delete drops the key) and a
  // key written twice in one batch, the later operation winning.
  b.clear();
  for (int i = 0; i < 3000; i += 3) b.put(keys[i], "new" + std::to_string(i));
  for (int i = 1; i < 3000; i += 3) b.del(keys[i]);
  b.put("d5", "first");
  b.del("d5");
  b.put("d8", "first");
  b.put("d8", "second");
  ASSERT_FALSE(kv_->write(b, false));
  expect_agreement(keys);
  std::string v;
  EXPECT_EQ(kv_->get("d5", v), errc::not_found);
  ASSERT_FALSE(kv_->get("d8", v));
  EXPECT_EQ(v, "second");
  // Loaded again from the store, in pages (more keys than one page of the load's scan).
  open();
  expect_agreement(keys);
  ASSERT_FALSE(kv_->get("d3", v));
  EXPECT_EQ(v, "new3");
  EXPECT_EQ(kv_->get("d4", v), errc::not_found);
  // Keys outside the prefix are read from the store.
  ASSERT_FALSE(kv_->get("o1", v));
  EXPECT_EQ(v, "offset");
  // multi_get: all indexed, and mixed.
  std::vector<std::string> values;
  std::vector<std::error_code> errors;
  kv_->multi_get({"d3", "d4"}, values, errors);
  EXPECT_EQ(values[0], "new3");
  EXPECT_EQ(errors[1], errc::not_found);
  kv_->multi_get({"o1", "d3"}, values, errors);
  EXPECT_EQ(values[0], "offset");
  EXPECT_EQ(values[1], "new3");
}

TEST_F(read_index_test, EmptiedAndRefilledTablesKeepEveryKey) {
  // Deletion by backward shift: erase keys in every order and check the rest are still found.
  std::mt19937 rng(7);
  std::vector<std::string> keys;
  for (int i = 0; i < 5000; ++i) keys.push_back("d" + std::to_string(rng()));
  for (int round = 0; round < 3; ++round) {
    write_batch b;
    for (const auto& k : keys) b.put(k, k + std::to_string(round));
    ASSERT_FALSE(kv_->write(b, false));
    std::shuffle(keys.begin(), keys.end(), rng);
    b.clear();
    for (std::size_t i = 0; i < keys.size() / 2; ++i) b.del(keys[i]);
    ASSERT_FALSE(kv_->write(b, false));
    expect_agreement(keys);
  }
}

TEST_F(read_index_test, ABudgetDropsTheIndexThatCrossesItAndReadsGoOnFromTheStore) {
  auto budget = std::make_shared<memory_budget>(256 << 10);
  std::size_t dropped_bytes = 0;
  int drops = 0;
  read_index_options ro;
  ro.budget = budget;
  ro.on_drop = [&](std::size_t bytes, const std::string&) {
    dropped_bytes = bytes;
    ++drops;
  };
  open(ro);
  std::vector<std::string> keys;
  write_batch b;
  // 1,000 records of 100 B: within 256 KiB. The index's bytes are what the budget holds.
  for (int i = 0; i < 1000; ++i) keys.push_back("d" + std::to_string(i));
  for (const auto& k : keys) b.put(k, std::string(100, 'a'));
  ASSERT_FALSE(kv_->write(b, false));
  EXPECT_EQ(index_state(*kv_), "ready");
  const auto held = std::stoll(kv_->property("datashare.read-index.bytes"));
  EXPECT_GT(held, 1000 * 100);
  EXPECT_EQ(budget->used(), held);
  expect_agreement(keys);
  // Deletes give bytes back.
  b.clear();
  for (int i = 0; i < 500; ++i) b.del(keys[static_cast<std::size_t>(i)]);
  ASSERT_FALSE(kv_->write(b, false));
  EXPECT_LT(budget->used(), held);
  EXPECT_EQ(budget->used(), std::stoll(kv_->property("datashare.read-index.bytes")));
  // 2,000 more records cross it: the index is dropped, its bytes given back, and every key still
  // reads as the store holds it, later writes included.
  b.clear();
  for (int i = 1000; i < 3000; ++i) keys.push_back("d" + std::to_string(i));
  for (std::size_t i = 1000; i < keys.size(); ++i) b.put(keys[i], std::string(100, 'b'));
  ASSERT_FALSE(kv_->write(b, false));
  EXPECT_EQ(drops, 1);
  EXPECT_GT(dropped_bytes, std::size_t{256} << 10);
  EXPECT_EQ(index_state(*kv_), "dropped");
  EXPECT_EQ(budget->used(), 0);
  expect_agreement(keys);
  b.clear();
  b.put("d1", "after");
  b.del("d2000");
  ASSERT_FALSE(kv_->write(b, false));
  std::string v;
  ASSERT_FALSE(kv_->get("d1", v));
  EXPECT_EQ(v, "after");
  EXPECT_EQ(kv_->get("d2000", v), errc::not_found);
  std::vector<std::string> values;
  std::vector<std::error_code> errors;
  kv_->multi_get({"d1", "d2000", "d2001"}, values, errors);
  EXPECT_EQ(values[0], "after");
  EXPECT_EQ(errors[1], errc::not_found);
  EXPECT_EQ(values[2], std::string(100, 'b'));
  EXPECT_EQ(budget->used(), 0);
  EXPECT_EQ(drops, 1);
  expect_agreement(keys);

  // Opened again over the same 2,501 records: the load stops where the budget is crossed.
  drops = 0;
  open(ro);
  EXPECT_EQ(drops, 1);
  EXPECT_EQ(index_state(*kv_), "dropped");
  EXPECT_EQ(budget->used(), 0);
  expect_agreement(keys);
  // With a budget that holds them, the load indexes them all.
  ro.budget = std::make_shared<memory_budget>(1 << 20);
  open(ro);
  EXPECT_EQ(index_state(*kv_), "ready");
  EXPECT_EQ(kv_->property("datashare.read-index.entries"), "2500");
  EXPECT_EQ(ro.budget->used(), std::stoll(kv_->property("datashare.read-index.bytes")));
  expect_agreement(keys);
}

TEST_F(read_index_test, BuiltWhileWritesGoOnItHoldsWhatTheStoreHolds) {
  // 60,000 records, then the index opened over them and built (a scan on its own thread) while a
  // writer overwrites and deletes (real deletes: the tombstone case) keys all over the range.
  std::vector<std::string> keys;
  write_batch b;
  for (int i = 0; i < 60000; ++i) {
    keys.push_back("d" + std::to_string(100000 + i));
    b.put(keys.back(), "v0-" + std::to_string(i));
  }
  ASSERT_FALSE(kv_->write(b, false));
  for (int round = 0; round < 3; ++round) {
    kv_.reset();
    std::string error;
    rocksdb_options o;
    o.wal = false;
    auto raw = open_rocksdb(dir_.string(), o, error);
    ASSERT_TRUE(raw) << error;
    inner_ = raw.get();
    kv_ = with_read_index(std::move(raw), "d");
    std::mt19937 rng(static_cast<unsigned>(round));
    int batches = 0;
    while (index_state(*kv_) == "building" || batches < 20) {
      b.clear();
      for (int k = 0; k < 200; ++k) {
        const auto& key = keys[rng() % keys.size()];
        if (rng() % 3 == 0) {
          b.del(key);
        } else {
          b.put(key, "v" + std::to_string(round + 1) + "-" + std::to_string(batches));
        }
      }
      ASSERT_FALSE(kv_->write(b, false));
      ++batches;
    }
    EXPECT_EQ(index_state(*kv_), "ready");
    expect_agreement(keys);
    std::cout << "round " << round << ": " << batches << " batches written while the index was built\n";
  }
}

TEST_F(read_index_test, ABulkLoadSuspendsTheIndexAndItIsBuiltAgainAfter) {
  std::vector<std::string> keys;
  write_batch b;
  for (int i = 0; i < 3000; ++i) keys.push_back("d" + std::to_string(i));
  for (int i = 0; i < 1000; ++i) b.put(keys[static_cast<std::size_t>(i)], "before");
  ASSERT_FALSE(kv_->write(b, false));
  EXPECT_EQ(kv_->property("datashare.read-index.entries"), "1000");
  kv_->expect_new_keys(true);
  EXPECT_EQ(index_state(*kv_), "suspended");
  EXPECT_EQ(kv_->property("datashare.read-index.entries"), "0");
  EXPECT_EQ(kv_->property("datashare.read-index.bytes"), "0");
  b.clear();
  for (int i = 500; i < 3000; ++i) b.put(keys[static_cast<std::size_t>(i)], "during");
  b.del("d7");
  ASSERT_FALSE(kv_->write(b, false));
  EXPECT_EQ(kv_->property("datashare.read-index.entries"), "0");  // the writes skip it
  std::string v;
  ASSERT_FALSE(kv_->get("d2999", v));  // and reads go to the store
  EXPECT_EQ(v, "during");
  EXPECT_EQ(kv_->get("d7", v), errc::not_found);
  kv_->expect_new_keys(false);
  await_build(*kv_);
  EXPECT_EQ(index_state(*kv_), "ready");
  expect_agreement(keys);
  ASSERT_FALSE(kv_->get("d10", v));
  EXPECT_EQ(v, "before");
  ASSERT_FALSE(kv_->get("d600", v));
  EXPECT_EQ(v, "during");
}

TEST(StoreMemoryTest, ASmallLimitShrinksTheWriteBuffersAndTheCacheALargeOneChangesNothing) {
  constexpr std::size_t MiB = std::size_t{1} << 20;
  // The operator's default sidecar limit, 128Mi: four 8 MiB write buffers (memtables, or two
  // stages of 16 MiB during a bootstrap) for the one replica, a quarter of the limit.
  auto m = store_memory_for(128 * MiB, 1);
  EXPECT_EQ(m.replica_write_buffer, 8 * MiB);
  EXPECT_EQ(m.logged_write_buffer, 8 * MiB);
  EXPECT_EQ(m.block_cache, 8 * MiB);
  EXPECT_EQ(m.read_index_budget, 32 * MiB);
  // Two replicas share that quarter.
  EXPECT_EQ(store_memory_for(128 * MiB, 2).replica_write_buffer, 4 * MiB);
  // Bounded below: a tiny limit does not make tiny table files.
  m = store_memory_for(16 * MiB, 4);
  EXPECT_EQ(m.replica_write_buffer, 2 * MiB);
  EXPECT_EQ(m.logged_write_buffer, 2 * MiB);
  EXPECT_EQ(m.block_cache, 4 * MiB);
  // A large machine, or an unknown limit: the defaults.
  for (std::size_t limit : {std::size_t{24} << 30, std::size_t{0}}) {
    m = store_memory_for(limit, 1);
    EXPECT_EQ(m.replica_write_buffer, kReplicaWriteBufferBytes) << limit;
    EXPECT_EQ(m.logged_write_buffer, 16 * MiB) << limit;
    EXPECT_EQ(m.block_cache, kBlockCacheBytes) << limit;
    EXPECT_EQ(m.read_index_budget, limit / 4) << limit;  // none when the limit is unknown
  }
}

TEST(ReadIndexTest, IndexesSharingABudgetHoldItTogether) {
  auto budget = std::make_shared<memory_budget>(256 << 10);
  int drops_a = 0;
  int drops_b = 0;
  read_index_options ra{budget, [&](std::size_t, const std::string&) { ++drops_a; }};
  read_index_options rb{budget, [&](std::size_t, const std::string&) { ++drops_b; }};
  auto a = indexed(std::make_unique<memory_kv>(), "d", ra);
  auto b = indexed(std::make_unique<memory_kv>(), "d", rb);
  ASSERT_TRUE(a && b);
  write_batch w;
  // 600 records of 100 B: ~140 KiB in an index (entries, and the slot arrays of 64 shards).
  for (int i = 0; i < 600; ++i) w.put("d" + std::to_string(i), std::string(100, 'x'));
  ASSERT_FALSE(a->write(w, false));
  EXPECT_EQ(drops_a, 0);
  EXPECT_GT(budget->used(), 128 << 10);
  // b's copy of the same records takes the two past 256 KiB: b, which crossed it, is dropped.
  ASSERT_FALSE(b->write(w, false));
  EXPECT_EQ(drops_a, 0);
  EXPECT_EQ(drops_b, 1);
  EXPECT_EQ(index_state(*a), "ready");
  EXPECT_EQ(index_state(*b), "dropped");
  EXPECT_EQ(budget->used(), std::stoll(a->property("datashare.read-index.bytes")));
  std::string v;
  ASSERT_FALSE(b->get("d7", v));
  EXPECT_EQ(v, std::string(100, 'x'));
}

TEST(ReadIndexTest, ReadersDuringADropFindEveryKey) {
  // Run under tsan too: a reader racing the drop of its key's shard reads the inner store.
  for (int round = 0; round < 20; ++round) {
    read_index_options ro;
    ro.budget = std::make_shared<memory_budget>(200 << 10);
    auto kv = indexed(std::make_unique<memory_kv>(), "d", ro);
    write_batch b;
    for (int i = 0; i < 500; ++i) b.put("d" + std::to_string(i), "v" + std::to_string(i));
    ASSERT_FALSE(kv->write(b, false));
    std::atomic<bool> done{false};
    std::vector<std::thread> readers;
    std::atomic<long> reads{0};
    std::atomic<bool> failed{false};
    for (int r = 0; r < 2; ++r) {
      readers.emplace_back([&, r] {
        std::string v;
        for (int i = r; !done.load(); i = (i + 7) % 500) {
          const std::string k = "d" + std::to_string(i);
          if (kv->get(k, v) || v != "v" + std::to_string(i)) {
            ADD_FAILURE() << k << " read as " << v;
            failed = true;
            return;
          }
          reads.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    // Other keys until the budget drops the index.
    for (int i = 0; index_state(*kv) != "dropped"; ++i) {
      b.clear();
      for (int k = 0; k < 50; ++k) b.put("dx" + std::to_string(i * 50 + k), std::string(200, 'y'));
      ASSERT_FALSE(kv->write(b, false));
    }
    while (reads.load() < 1000 && !failed.load()) std::this_thread::yield();
    done = true;
    for (auto& t : readers) t.join();
    EXPECT_EQ(ro.budget->used(), 0);
  }
}

TEST(ReadIndexTest, AFailedWriteLeavesTheIndexAsTheStoreReadsIt) {
  auto mem = std::make_unique<memory_kv>();
  memory_kv* inner = mem.get();
  auto kv = indexed(std::move(mem), "d");
  write_batch b;
  b.put("da", "1");
  ASSERT_FALSE(kv->write(b, false));
  inner->fail_next_writes(1);
  b.clear();
  b.put("da", "2");
  b.put("db", "2");
  EXPECT_EQ(kv->write(b, true), errc::injected_failure);
  std::string v;
  ASSERT_FALSE(kv->get("da", v));
  EXPECT_EQ(v, "1");
  EXPECT_EQ(kv->get("db", v), errc::not_found);
}

TEST(ReadIndexTest, ReadersDuringWritesNeverSeeATornValue) {
  // Run under tsan too: the index's locks are what keep a value whole while a write replaces it.
  auto kv = indexed(std::make_unique<memory_kv>(), "d");
  std::atomic<bool> done{false};
  std::thread writer([&] {
    write_batch b;
    for (int i = 0; i < 3000; ++i) {
      b.clear();
      // Each value is one letter repeated, of a length that changes: a torn read mixes letters or
      // lengths.
      for (int k = 0; k < 8; ++k) {
        b.put("d" + std::to_string(k),
              std::string(static_cast<std::size_t>(16 + (i * 7 + k) % 200), static_cast<char>('a' + (i + k) % 26)));
      }
      if (i % 5 == 0) b.del("d" + std::to_string(i % 8));
      ASSERT_FALSE(kv->write(b, false));
    }
    done = true;
  });
  std::vector<std::thread> readers;
  std::atomic<long> seen{0};
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      std::string v;
      while (!done) {
        for (int k = 0; k < 8; ++k) {
          auto e = kv->get("d" + std::to_string(k), v);
          if (e == errc::not_found) continue;
          ASSERT_FALSE(e);
          ASSERT_GE(v.size(), 16u);
          ASSERT_EQ(v.find_first_not_of(v[0]), std::string::npos) << v;
          seen.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  writer.join();
  for (auto& t : readers) t.join();
  EXPECT_GT(seen.load(), 0);
}

}  // namespace
}  // namespace datashare::sidecar::store
