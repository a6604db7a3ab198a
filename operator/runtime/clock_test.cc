#include "operator/runtime/clock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;

TEST(ManualClock, MovesOnlyWhenAdvanced) {
  manual_clock clock;
  const auto start = clock.now();
  EXPECT_EQ(clock.now(), start);
  clock.advance(250ms);
  EXPECT_EQ(clock.now() - start, 250ms);
}

TEST(ManualClock, WaitForAPassedDeadlineReturnsAtOnce) {
  manual_clock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock lock(mu);
  clock.wait_until(cv, lock, clock.now());
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(clock.waiters(), 0U);
}

TEST(ManualClock, AdvanceWakesAWaiterAtItsDeadlineAndNotBefore) {
  manual_clock clock;
  std::mutex mu;
  std::condition_variable cv;
  const auto deadline = clock.now() + 10s;
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    std::unique_lock lock(mu);
    while (clock.now() < deadline) clock.wait_until(cv, lock, deadline);
    woke = true;
  });

  ASSERT_TRUE(clock.await_waiters(1));
  clock.advance(9s);
  // The waiter was not due, so it was not notified and is still registered.
  EXPECT_EQ(clock.waiters(), 1U);
  EXPECT_FALSE(woke);
  clock.advance(1s);
  waiter.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(clock.waiters(), 0U);
}

TEST(ManualClock, OwnersNotifyStillWakesAWaiter) {
  manual_clock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::thread waiter([&] {
    std::unique_lock lock(mu);
    while (!ready) clock.wait_until(cv, lock, clock.now() + 1h);
  });
  ASSERT_TRUE(clock.await_waiters(1));
  {
    std::lock_guard guard(mu);
    ready = true;
  }
  cv.notify_all();
  waiter.join();
  EXPECT_EQ(clock.waiters(), 0U);
}

// Many threads waiting and advancing at once: no wake-up may be lost (the test would hang, and
// ctest's timeout would fail it) and ThreadSanitizer must stay quiet.
TEST(ManualClock, ConcurrentWaitersAndAdvancesLoseNoWakeUp) {
  manual_clock clock;
  constexpr int kWaiters = 8;
  std::mutex mu;
  std::condition_variable cv;
  const auto deadline = clock.now() + 100ms;
  std::vector<std::thread> waiters;
  waiters.reserve(kWaiters);
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&] {
      std::unique_lock lock(mu);
      while (clock.now() < deadline) clock.wait_until(cv, lock, deadline);
    });
  }
  std::thread advancer([&] {
    for (int i = 0; i < 100; ++i) clock.advance(1ms);
  });
  advancer.join();
  for (auto& t : waiters) t.join();
  EXPECT_GE(clock.now(), deadline);
}

TEST(RealClock, WaitsUntilTheDeadline) {
  const clock& clock = default_clock();
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock lock(mu);
  const auto deadline = clock.now() + 20ms;
  while (clock.now() < deadline) clock.wait_until(cv, lock, deadline);
  EXPECT_GE(clock.now(), deadline);
}

}  // namespace
}  // namespace datashare::runtime
