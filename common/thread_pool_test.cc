#include "common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

namespace datashare {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskBeforeItIsDestroyed) {
  std::atomic<int> ran{0};
  {
    thread_pool pool(3);
    for (int i = 0; i < 100; ++i) pool.post([&ran] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 100);
}

TEST(ThreadPoolTest, RunAllRunsEachIndexOnceAndTheFirstInline) {
  thread_pool pool(2);
  std::mutex mu;
  std::multiset<std::size_t> seen;
  std::thread::id first;
  run_all(pool, 5, [&](std::size_t i) {
    std::lock_guard lock(mu);
    seen.insert(i);
    if (i == 0) first = std::this_thread::get_id();
  });
  EXPECT_EQ(seen, (std::multiset<std::size_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(first, std::this_thread::get_id());
  run_all(pool, 0, [](std::size_t) { FAIL(); });
}

}  // namespace
}  // namespace datashare
