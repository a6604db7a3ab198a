#include "gateway/decision_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

namespace datashare::gateway {
namespace {
namespace fs = std::filesystem;

class decision_log_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gwlog-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static log_record rec(char type, const std::string& tx, const std::string& key = "k") {
    log_record r;
    r.type = type;
    r.tx = tx;
    if (type != 'E') {
      r.key = key;
      r.version = 7;
      r.value = R"({"id":"k"})";
      r.participants = {"owner", "copy"};
    }
    return r;
  }
  std::vector<std::string> segments() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    return out;
  }

  fs::path dir_;
};

TEST_F(decision_log_test, RecordsComeBackInOrder) {
  {
    std::vector<log_record> none;
    std::string error;
    auto log = decision_log::open(dir_.string(), none, error);
    ASSERT_TRUE(log) << error;
    EXPECT_TRUE(none.empty());
    ASSERT_FALSE(log->append(rec('B', "t1"), durability::written));
    ASSERT_FALSE(log->append(rec('C', "t1"), durability::synced));
    ASSERT_FALSE(log->append(rec('E', "t1"), durability::queued));
    ASSERT_FALSE(log->append(rec('B', "t2", "k\"2\n"), durability::synced));
  }
  std::vector<log_record> back;
  std::string error;
  auto log = decision_log::open(dir_.string(), back, error);
  ASSERT_TRUE(log) << error;
  ASSERT_EQ(back.size(), 4u);
  EXPECT_EQ(back[0].type, 'B');
  EXPECT_EQ(back[1].type, 'C');
  EXPECT_EQ(back[1].version, 7u);
  EXPECT_EQ(back[1].participants, (std::vector<std::string>{"owner", "copy"}));
  EXPECT_EQ(back[2].type, 'E');
  EXPECT_EQ(back[3].key, "k\"2\n");
}

TEST_F(decision_log_test, ATornTailIsCutOff) {
  {
    std::vector<log_record> none;
    std::string error;
    auto log = decision_log::open(dir_.string(), none, error);
    ASSERT_FALSE(log->append(rec('B', "t1"), durability::synced));
    ASSERT_FALSE(log->append(rec('C', "t1"), durability::synced));
  }
  auto segs = segments();
  ASSERT_EQ(segs.size(), 1u);
  // Half of a record, as a crash in the middle of a write leaves it.
  std::string frame = encode_frame(rec('E', "t1"));
  {
    std::ofstream out(dir_ / segs[0], std::ios::app | std::ios::binary);
    out << frame.substr(0, frame.size() / 2);
  }
  std::vector<log_record> back;
  std::string error;
  auto log = decision_log::open(dir_.string(), back, error);
  ASSERT_TRUE(log) << error;
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].type, 'C');
  // A flipped byte inside a record of a sealed segment is caught by its checksum, and refused.
  log.reset();
  auto path = dir_ / segs[0];
  auto size = fs::file_size(path);
  EXPECT_EQ(size, 2 * encode_frame(rec('B', "t1")).size()) << "the torn half was cut";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size - 3));
    f.put('#');
  }
  back.clear();
  log = decision_log::open(dir_.string(), back, error);
  EXPECT_FALSE(log);
  EXPECT_NE(error.find("corrupt record"), std::string::npos) << error;
}

TEST_F(decision_log_test, GroupCommitSharesFsyncs) {
  std::vector<log_record> none;
  std::string error;
  auto log = decision_log::open(dir_.string(), none, error);
  ASSERT_TRUE(log) << error;
  constexpr int kThreads = 16, kEach = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (log->append(rec('C', "t" + std::to_string(t) + "-" + std::to_string(i)), durability::synced))
          failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LT(log->fsyncs(), static_cast<std::uint64_t>(kThreads * kEach)) << "every commit had an fsync of its own";
  EXPECT_GT(log->fsyncs(), 0u);
}

TEST_F(decision_log_test, NonBlockingAppendsCallBackOnceDurableAndShareFsyncs) {
  std::vector<log_record> read;
  std::string error;
  auto log = decision_log::open(dir_.string(), read, error);
  ASSERT_TRUE(log) << error;
  constexpr int kCommits = 200;
  std::mutex mu;
  std::condition_variable cv;
  int written = 0, synced = 0;
  for (int i = 0; i < kCommits; ++i) {
    log->append(rec('B', "b" + std::to_string(i)), durability::written, [&](std::error_code ec) {
      EXPECT_FALSE(ec);
      std::lock_guard lock(mu);
      ++written;
      cv.notify_all();
    });
    log->append(rec('C', "b" + std::to_string(i)), durability::synced, [&](std::error_code ec) {
      EXPECT_FALSE(ec);
      std::lock_guard lock(mu);
      ++synced;
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return synced == kCommits; }));
    EXPECT_EQ(written, kCommits);
  }
  EXPECT_GT(log->fsyncs(), 0u);
  EXPECT_LT(log->fsyncs(), static_cast<std::uint64_t>(kCommits)) << "every commit had an fsync of its own";
  // Every commit is on disk: reopening reads all of them back.
  log.reset();
  read.clear();
  ASSERT_TRUE(decision_log::open(dir_.string(), read, error)) << error;
  EXPECT_EQ(read.size(), 2u * kCommits);
}

// Written records go to the file from their callers' threads while the writer thread writes and
// fsyncs the others: each thread's records must still come back in the order it appended them,
// with small segments so rotations happen in the middle of it.
TEST_F(decision_log_test, WrittenAndSyncedRecordsFromManyThreadsKeepEachThreadsOrder) {
  std::vector<log_record> none;
  std::string error;
  log_options o;
  o.max_segment_bytes = 4000;
  std::mutex open_mu;
  std::map<std::string, bool> open;  // begun, not ended (true: commit appended): what a rotation carries over
  {
    auto log = decision_log::open(dir_.string(), none, error, o);
    ASSERT_TRUE(log) << error;
    log->set_snapshot([&] {
      std::lock_guard lock(open_mu);
      std::vector<log_record> out;
      for (const auto& [tx, committing] : open) {
        out.push_back(rec('B', tx));
        if (committing) out.push_back(rec('C', tx));
      }
      return out;
    });
    constexpr int kThreads = 6, kEach = 30;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          std::string tx = "t" + std::to_string(t) + "-" + std::to_string(i);
          {
            std::lock_guard lock(open_mu);
            open[tx] = false;
          }
          std::promise<std::error_code> written, synced;
          log->append(rec('B', tx), durability::written, [&](std::error_code ec) { written.set_value(ec); });
          if (written.get_future().get()) failures.fetch_add(1);
          {
            std::lock_guard lock(open_mu);
            open[tx] = true;  // as the coordinator's state, before the record
          }
          log->append(rec('C', tx), durability::synced, [&](std::error_code ec) { synced.set_value(ec); });
          if (synced.get_future().get()) failures.fetch_add(1);
          if (i % 2 == 0) {  // every other one ends; the rest stay open
            {
              std::lock_guard lock(open_mu);
              open.erase(tx);
            }
            if (log->append(rec('E', tx), durability::queued)) failures.fetch_add(1);
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
  }
  std::vector<log_record> back;
  auto log = decision_log::open(dir_.string(), back, error, o);
  ASSERT_TRUE(log) << error;
  EXPECT_GE(segments().size(), 1u);
  std::map<std::string, std::string> seen;  // tx → its record types, in file order
  for (const auto& r : back) seen[r.tx].push_back(r.type);
  for (const auto& [tx, committing] : open) {
    ASSERT_TRUE(seen.count(tx)) << tx << " is unfinished and must survive every rotation";
    const auto& types = seen[tx];
    EXPECT_EQ(types.find('E'), std::string::npos) << tx;
    auto c = types.rfind('C');
    ASSERT_NE(c, std::string::npos) << tx << ": " << types;
    EXPECT_LT(types.find('B'), c) << tx << ": " << types;
  }
  for (const auto& [tx, types] : seen) {
    auto b = types.find('B'), c = types.find('C'), e = types.find('E');
    if (b != std::string::npos && c != std::string::npos) {
      EXPECT_LT(b, c) << tx << ": " << types;
    }
    if (c != std::string::npos && e != std::string::npos) {
      EXPECT_LT(c, e) << tx << ": " << types;
    }
  }
}

TEST_F(decision_log_test, RotationKeepsOnlyWhatIsUnfinished) {
  std::vector<log_record> none;
  std::string error;
  log_options o;
  o.max_segment_bytes = 2000;
  {
    auto log = decision_log::open(dir_.string(), none, error, o);
    ASSERT_TRUE(log) << error;
    log->set_snapshot([] { return std::vector<log_record>{rec('B', "open"), rec('C', "open")}; });
    for (int i = 0; i < 100; ++i) {
      std::string tx = "t" + std::to_string(i);
      ASSERT_FALSE(log->append(rec('B', tx), durability::written));
      ASSERT_FALSE(log->append(rec('C', tx), durability::synced));
      ASSERT_FALSE(log->append(rec('E', tx), durability::written));
    }
  }
  EXPECT_LE(segments().size(), 2u) << "older segments are deleted once the snapshot is on disk";
  std::vector<log_record> back;
  auto log = decision_log::open(dir_.string(), back, error, o);
  ASSERT_TRUE(log) << error;
  ASSERT_GE(back.size(), 2u);
  EXPECT_EQ(back[0].tx, "open");
  EXPECT_EQ(back[1].type, 'C');
  EXPECT_LT(back.size(), 300u);
  // compact() after recovery: only what is given survives.
  ASSERT_FALSE(log->compact({rec('B', "left")}));
  back.clear();
  log.reset();
  log = decision_log::open(dir_.string(), back, error, o);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].tx, "left");
}

TEST_F(decision_log_test, AnUnusableDirectoryIsAnError) {
  std::vector<log_record> none;
  std::string error;
  EXPECT_FALSE(decision_log::open("/proc/no-such-dir/log", none, error));
  EXPECT_NE(error.find("cannot create"), std::string::npos) << error;
}

}  // namespace
}  // namespace datashare::gateway
