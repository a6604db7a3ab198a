// The same contract tests for both store::kv implementations.
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "sidecar/store/group_writer.h"
#include "sidecar/store/memory_kv.h"
#include "sidecar/store/rocksdb_kv.h"

namespace datashare::sidecar::store {
namespace {

class kv_contract_test : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      kv_ = std::make_unique<memory_kv>();
      return;
    }
    dir_ = std::filesystem::temp_directory_path() /
           ("kv_test." + std::to_string(::getpid()) + "." + std::to_string(std::random_device()()));
    std::string error;
    kv_ = open_rocksdb(dir_.string(), options(), error);
    ASSERT_TRUE(kv_) << error;
  }
  // "rocksdb-nowal": the replica's store, without a write-ahead log.
  rocksdb_options options() const {
    rocksdb_options o;
    o.wal = GetParam() != "rocksdb-nowal";
    return o;
  }
  void TearDown() override {
    kv_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void reopen() {
    if (dir_.empty()) return;
    kv_.reset();
    std::string error;
    kv_ = open_rocksdb(dir_.string(), options(), error);
    ASSERT_TRUE(kv_) << error;
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
  std::map<std::string, std::optional<std::string>> want;
  write_batch b;
  for (int i = 0; i < 3000; ++i) {
    std::string key = "k" + std::to_string(rng() % 400);
    if (rng() % 4 == 0) {
      b.del(key);
      want[key] = std::nullopt;
    } else {
      std::string value = "v" + std::to_string(i);
      b.put(key, value);
      want[key] = value;
    }
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

INSTANTIATE_TEST_SUITE_P(impls, kv_contract_test, ::testing::Values("memory", "rocksdb", "rocksdb-nowal"));

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

// While a writer expects new keys (a replica's bootstrap) the memtables made from then on have no
// bloom filter (kMemtableBloomBytes of the memtable's arena, and a cache miss per insert); once
// it no longer does, the next memtable has one again.
TEST(RocksdbKvTest, ExpectingNewKeysLeavesTheBloomFilterOutOfNewMemtables) {
  auto dir = std::filesystem::temp_directory_path() / ("kv_test.bloom." + std::to_string(::getpid()));
  std::string error;
  rocksdb_options o;
  o.wal = false;
  auto kv = open_rocksdb(dir.string(), o, error);
  ASSERT_TRUE(kv) << error;
  // A write, a flush (the next writes go to a new memtable), and a write into that memtable (a
  // memtable's size is counted as it is written).
  auto next_memtable_bytes = [&kv](const std::string& key) {
    write_batch b;
    b.put(key, "v");
    EXPECT_FALSE(kv->write(b, false));
    EXPECT_FALSE(kv->flush(true));
    EXPECT_FALSE(kv->write(b, false));
    return std::stoull(kv->property("rocksdb.cur-size-active-mem-table"));
  };
  EXPECT_GE(next_memtable_bytes("a"), kMemtableBloomBytes);
  kv->expect_new_keys(true);
  EXPECT_LT(next_memtable_bytes("b"), kMemtableBloomBytes / 4);
  kv->expect_new_keys(false);
  EXPECT_GE(next_memtable_bytes("c"), kMemtableBloomBytes);
  std::string v;
  for (const char* key : {"a", "b", "c"}) EXPECT_FALSE(kv->get(key, v)) << key;
  kv.reset();
  std::filesystem::remove_all(dir);
}

TEST(RocksdbKvTest, ReportsAnUnusableDirectory) {
  std::string error;
  auto kv = open_rocksdb("/proc/version/not-a-dir", {}, error);
  EXPECT_FALSE(kv);
  EXPECT_NE(error.find("/proc/version/not-a-dir"), std::string::npos) << error;
}

}  // namespace
}  // namespace datashare::sidecar::store
