#include "operator/runtime/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>
#include <vector>

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;

// Bounds every real wait in these tests: a broken queue fails them instead of hanging.
constexpr auto kRealTimeout = 10s;

// Records what the queue reports, for assertions. Owned by the queue; the test keeps a pointer.
class recording_metrics final : public queue_metrics {
 public:
  struct snapshot {
    int adds = 0;
    int depth = 0;
    int retries = 0;
    std::vector<clock::duration> queued;
    std::vector<clock::duration> worked;
    int unfinished_updates = 0;
    clock::duration unfinished_total{};
    clock::duration longest{};
  };

  void on_add() override {
    std::lock_guard guard(mu_);
    ++state_.adds;
    ++state_.depth;
  }
  void on_get(clock::duration queued) override {
    std::lock_guard guard(mu_);
    --state_.depth;
    state_.queued.push_back(queued);
  }
  void on_done(clock::duration worked) override {
    std::lock_guard guard(mu_);
    state_.worked.push_back(worked);
  }
  void on_retry() override {
    std::lock_guard guard(mu_);
    ++state_.retries;
  }
  void on_unfinished_work(clock::duration total, clock::duration longest) override {
    {
      std::lock_guard guard(mu_);
      ++state_.unfinished_updates;
      state_.unfinished_total = total;
      state_.longest = longest;
    }
    updated_.notify_all();
  }

  snapshot get() const {
    std::lock_guard guard(mu_);
    return state_;
  }

  // For updates made by the queue's timer thread.
  bool await_unfinished_updates(int count) const {
    std::unique_lock lock(mu_);
    return updated_.wait_for(lock, kRealTimeout, [&] { return state_.unfinished_updates >= count; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable updated_;
  snapshot state_;
};

work_queue_options manual_options(const manual_clock& clock) {
  work_queue_options options;
  options.time_source = &clock;
  return options;
}

// Runs get() on another thread.
std::future<std::optional<std::string>> get_async(work_queue& queue) {
  return std::async(std::launch::async, [&queue] { return queue.get(); });
}

// --- de-duplication and exclusion ---

TEST(WorkQueue, HandsOutKeysInOrderAdded) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  queue.add("ns/b");
  queue.add("ns/c");
  EXPECT_EQ(queue.get(), "ns/a");
  EXPECT_EQ(queue.get(), "ns/b");
  EXPECT_EQ(queue.get(), "ns/c");
}

TEST(WorkQueue, AKeyWaitingIsQueuedOnce) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  queue.add("ns/b");
  queue.add("ns/a");
  queue.add("ns/a");
  EXPECT_EQ(queue.len(), 2U);
  EXPECT_EQ(queue.get(), "ns/a");
  EXPECT_EQ(queue.get(), "ns/b");
  EXPECT_EQ(queue.len(), 0U);
}

TEST(WorkQueue, AKeyAddedWhileProcessingIsQueuedAgainAfterDone) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  ASSERT_EQ(queue.get(), "ns/a");

  queue.add("ns/a");
  queue.add("ns/a");
  EXPECT_EQ(queue.len(), 0U) << "a key being processed must not be handed to another worker";

  queue.done("ns/a");
  EXPECT_EQ(queue.len(), 1U) << "the adds made meanwhile are one more round";
  EXPECT_EQ(queue.get(), "ns/a");
  queue.done("ns/a");
  EXPECT_EQ(queue.len(), 0U);
}

TEST(WorkQueue, ASecondWorkerWaitsForTheKeyHeldByTheFirst) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  ASSERT_EQ(queue.get(), "ns/a");
  queue.add("ns/a");

  auto second = get_async(queue);
  // It blocks, because the only key queued is held; a bounded look that it has not returned yet.
  EXPECT_EQ(second.wait_for(20ms), std::future_status::timeout);
  queue.add("ns/b");
  EXPECT_EQ(second.get(), "ns/b") << "ns/b is free; ns/a is still held";

  auto third = get_async(queue);
  queue.done("ns/a");
  ASSERT_EQ(third.wait_for(kRealTimeout), std::future_status::ready);
  EXPECT_EQ(third.get(), "ns/a");
}

TEST(WorkQueue, DoneForAKeyNotHandedOutIsIgnored) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  queue.done("ns/a");
  queue.done("ns/never");
  EXPECT_EQ(queue.len(), 1U);
  EXPECT_EQ(queue.get(), "ns/a");
}

TEST(WorkQueue, GetBlocksUntilAKeyIsAdded) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  auto getter = get_async(queue);
  queue.add("ns/a");
  ASSERT_EQ(getter.wait_for(kRealTimeout), std::future_status::ready);
  EXPECT_EQ(getter.get(), "ns/a");
}

// --- delayed adds ---

TEST(WorkQueue, ADelayedKeyIsNotReadyBeforeItsDeadline) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add_after("ns/a", 10ms);
  EXPECT_EQ(queue.len(), 0U);
  clock.advance(9ms);
  EXPECT_EQ(queue.len(), 0U);
  clock.advance(1ms);
  EXPECT_EQ(queue.len(), 1U);
  EXPECT_EQ(queue.get(), "ns/a");
}

TEST(WorkQueue, DelayedKeysBecomeReadyInDeadlineOrder) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add_after("ns/c", 30ms);
  queue.add_after("ns/a", 10ms);
  queue.add_after("ns/b", 20ms);
  clock.advance(15ms);
  EXPECT_EQ(queue.len(), 1U);
  clock.advance(15ms);
  EXPECT_EQ(queue.len(), 3U);
  EXPECT_EQ(queue.get(), "ns/a");
  EXPECT_EQ(queue.get(), "ns/b");
  EXPECT_EQ(queue.get(), "ns/c");
}

TEST(WorkQueue, ALaterAddAfterKeepsTheEarliestDeadline) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add_after("ns/sooner-first", 10ms);
  queue.add_after("ns/sooner-first", 50ms);
  queue.add_after("ns/later-first", 50ms);
  queue.add_after("ns/later-first", 10ms);
  clock.advance(10ms);
  EXPECT_EQ(queue.len(), 2U) << "both due at 10 ms, each once";
  queue.get();
  queue.get();
  clock.advance(100ms);
  EXPECT_EQ(queue.len(), 0U) << "the 50 ms deadlines were dropped, not kept as a second add";
}

TEST(WorkQueue, ANonPositiveDelayAddsAtOnce) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add_after("ns/a", 0ms);
  queue.add_after("ns/b", -5ms);
  EXPECT_EQ(queue.len(), 2U);
}

TEST(WorkQueue, ADelayedKeyMergesWithTheSameKeyWaiting) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  queue.add_after("ns/a", 10ms);
  clock.advance(10ms);
  EXPECT_EQ(queue.len(), 1U);
}

TEST(WorkQueue, TheTimerWakesABlockedGetterWhenADelayIsUp) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  auto getter = get_async(queue);
  queue.add_after("ns/a", 1h);
  clock.advance(1h);
  ASSERT_EQ(getter.wait_for(kRealTimeout), std::future_status::ready);
  EXPECT_EQ(getter.get(), "ns/a");
}

TEST(WorkQueue, AnEarlierDeadlineReschedulesTheTimer) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add_after("ns/late", 1h);
  ASSERT_TRUE(clock.await_waiters(1));  // the timer sleeps until the 1 h deadline
  auto getter = get_async(queue);
  queue.add_after("ns/early", 1s);
  clock.advance(1s);
  ASSERT_EQ(getter.wait_for(kRealTimeout), std::future_status::ready);
  EXPECT_EQ(getter.get(), "ns/early");
}

TEST(WorkQueue, DelaysRunOnTheRealClock) {
  work_queue queue;
  const auto start = std::chrono::steady_clock::now();
  queue.add_after("ns/a", 20ms);
  auto getter = get_async(queue);
  ASSERT_EQ(getter.wait_for(kRealTimeout), std::future_status::ready);
  EXPECT_EQ(getter.get(), "ns/a");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
}

// --- rate-limited adds ---

TEST(WorkQueue, RateLimitedAddsBackOffPerKeyUntilForgotten) {
  manual_clock clock;
  work_queue queue(manual_options(clock));  // the default limiter: 5 ms · 2^n, and a bucket

  queue.add_rate_limited("ns/a");
  clock.advance(4ms);
  EXPECT_EQ(queue.len(), 0U);
  clock.advance(1ms);
  ASSERT_EQ(queue.len(), 1U);
  ASSERT_EQ(queue.get(), "ns/a");
  queue.done("ns/a");

  queue.add_rate_limited("ns/a");
  clock.advance(9ms);
  EXPECT_EQ(queue.len(), 0U);
  clock.advance(1ms);
  EXPECT_EQ(queue.len(), 1U);
  EXPECT_EQ(queue.num_requeues("ns/a"), 2);

  queue.forget("ns/a");
  EXPECT_EQ(queue.num_requeues("ns/a"), 0);
  ASSERT_EQ(queue.get(), "ns/a");
  queue.done("ns/a");
  queue.add_rate_limited("ns/a");
  clock.advance(5ms);
  EXPECT_EQ(queue.len(), 1U) << "forget started the backoff over at 5 ms";
}

TEST(WorkQueue, UsesTheRateLimiterItIsGiven) {
  class fixed_delay final : public rate_limiter {
   public:
    clock::duration when(const std::string& /*key*/) override { return 1s; }
    void forget(const std::string& /*key*/) override {}
    int num_requeues(const std::string& /*key*/) const override { return 42; }
  };
  manual_clock clock;
  auto options = manual_options(clock);
  options.limiter = std::make_unique<fixed_delay>();
  work_queue queue(std::move(options));
  queue.add_rate_limited("ns/a");
  clock.advance(999ms);
  EXPECT_EQ(queue.len(), 0U);
  clock.advance(1ms);
  EXPECT_EQ(queue.len(), 1U);
  EXPECT_EQ(queue.num_requeues("ns/a"), 42);
}

// --- shutdown ---

TEST(WorkQueue, ShutDownUnblocksEveryGetter) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  std::vector<std::future<std::optional<std::string>>> getters;
  getters.reserve(4);
  for (int i = 0; i < 4; ++i) getters.push_back(get_async(queue));
  queue.shut_down();
  for (auto& getter : getters) {
    ASSERT_EQ(getter.wait_for(kRealTimeout), std::future_status::ready);
    EXPECT_EQ(getter.get(), std::nullopt);
  }
  EXPECT_TRUE(queue.shutting_down());
}

TEST(WorkQueue, AfterShutDownNothingIsHandedOutOrAdded) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/queued");
  queue.add_after("ns/delayed", 1ms);
  queue.shut_down();
  queue.shut_down();  // idempotent
  queue.add("ns/late");
  queue.add_rate_limited("ns/late");
  clock.advance(1s);
  EXPECT_EQ(queue.len(), 0U);
  EXPECT_EQ(queue.get(), std::nullopt);
}

TEST(WorkQueue, DrainWaitsForKeysInFlight) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  queue.add("ns/b");
  ASSERT_EQ(queue.get(), "ns/a");
  ASSERT_EQ(queue.get(), "ns/b");

  auto drained = std::async(std::launch::async, [&] { return queue.shut_down_with_drain(1h); });
  ASSERT_TRUE(clock.await_waiters(1));  // the drain is waiting on the clock
  EXPECT_EQ(queue.get(), std::nullopt) << "intake stops as the drain starts";
  queue.add("ns/a");
  queue.done("ns/a");
  EXPECT_EQ(drained.wait_for(20ms), std::future_status::timeout) << "ns/b is still in flight";
  queue.done("ns/b");
  ASSERT_EQ(drained.wait_for(kRealTimeout), std::future_status::ready);
  EXPECT_TRUE(drained.get());
  EXPECT_EQ(queue.len(), 0U) << "the add during the drain was not queued again";
}

TEST(WorkQueue, DrainGivesUpAfterItsTimeout) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/stuck");
  ASSERT_EQ(queue.get(), "ns/stuck");

  auto drained = std::async(std::launch::async, [&] { return queue.shut_down_with_drain(30s); });
  ASSERT_TRUE(clock.await_waiters(1));
  clock.advance(29s);
  EXPECT_EQ(drained.wait_for(20ms), std::future_status::timeout);
  clock.advance(1s);
  ASSERT_EQ(drained.wait_for(kRealTimeout), std::future_status::ready);
  EXPECT_FALSE(drained.get());
}

TEST(WorkQueue, DrainWithNothingInFlightReturnsAtOnce) {
  manual_clock clock;
  work_queue queue(manual_options(clock));
  queue.add("ns/a");
  EXPECT_TRUE(queue.shut_down_with_drain(1s));
}

// --- metrics ---

TEST(WorkQueueMetrics, CountsAddsGetsDonesAndRetriesWithTheirDurations) {
  manual_clock clock;
  auto options = manual_options(clock);
  auto sink = std::make_unique<recording_metrics>();
  const recording_metrics& metrics = *sink;
  options.metrics = std::move(sink);
  options.unfinished_work_period = 0ms;
  work_queue queue(std::move(options));

  queue.add("ns/a");
  queue.add("ns/a");  // merged: not an add
  queue.add("ns/b");
  EXPECT_EQ(metrics.get().adds, 2);
  EXPECT_EQ(metrics.get().depth, 2);

  clock.advance(3ms);
  ASSERT_EQ(queue.get(), "ns/a");
  clock.advance(7ms);
  queue.done("ns/a");
  auto seen = metrics.get();
  EXPECT_EQ(seen.depth, 1);
  EXPECT_EQ(seen.queued, std::vector<clock::duration>{3ms});
  EXPECT_EQ(seen.worked, std::vector<clock::duration>{7ms});

  queue.add_after("ns/c", 5ms);
  queue.add_rate_limited("ns/d");
  EXPECT_EQ(metrics.get().retries, 2);
  EXPECT_EQ(metrics.get().adds, 2) << "a delayed key is added when it is due";
  clock.advance(5ms);
  EXPECT_EQ(queue.len(), 3U);
  EXPECT_EQ(metrics.get().adds, 4);

  // A delayed key's queue time counts from its deadline.
  ASSERT_EQ(queue.get(), "ns/b");
  clock.advance(2ms);
  ASSERT_EQ(queue.get(), "ns/c");
  EXPECT_EQ(metrics.get().queued.back(), 2ms);
}

TEST(WorkQueueMetrics, AKeyAddedWhileProcessingCountsItsWaitFromThatAdd) {
  manual_clock clock;
  auto options = manual_options(clock);
  auto sink = std::make_unique<recording_metrics>();
  const recording_metrics& metrics = *sink;
  options.metrics = std::move(sink);
  work_queue queue(std::move(options));

  queue.add("ns/a");
  ASSERT_EQ(queue.get(), "ns/a");
  clock.advance(1s);
  queue.add("ns/a");
  EXPECT_EQ(metrics.get().depth, 1) << "the dirty key counts in depth while its previous round runs";
  clock.advance(4s);
  queue.done("ns/a");
  clock.advance(1s);
  ASSERT_EQ(queue.get(), "ns/a");
  EXPECT_EQ(metrics.get().queued.back(), 5s);
  EXPECT_EQ(metrics.get().depth, 0);
}

TEST(WorkQueueMetrics, ReportsUnfinishedWork) {
  manual_clock clock;
  auto options = manual_options(clock);
  auto sink = std::make_unique<recording_metrics>();
  const recording_metrics& metrics = *sink;
  options.metrics = std::move(sink);
  options.unfinished_work_period = 0ms;
  work_queue queue(std::move(options));

  queue.add("ns/a");
  queue.add("ns/b");
  ASSERT_EQ(queue.get(), "ns/a");
  clock.advance(2s);
  ASSERT_EQ(queue.get(), "ns/b");
  clock.advance(1s);
  queue.update_unfinished_work();
  auto seen = metrics.get();
  EXPECT_EQ(seen.unfinished_total, 4s);  // 3 s of ns/a and 1 s of ns/b
  EXPECT_EQ(seen.longest, 3s);

  queue.done("ns/a");
  queue.done("ns/b");
  queue.update_unfinished_work();
  seen = metrics.get();
  EXPECT_EQ(seen.unfinished_total, 0s);
  EXPECT_EQ(seen.longest, 0s);
}

TEST(WorkQueueMetrics, TheTimerPublishesUnfinishedWorkPeriodically) {
  manual_clock clock;
  auto options = manual_options(clock);
  auto sink = std::make_unique<recording_metrics>();
  const recording_metrics& metrics = *sink;
  options.metrics = std::move(sink);
  options.unfinished_work_period = 500ms;
  work_queue queue(std::move(options));

  queue.add("ns/a");
  ASSERT_EQ(queue.get(), "ns/a");
  ASSERT_TRUE(clock.await_waiters(1));  // the timer, until its first publication
  clock.advance(500ms);
  ASSERT_TRUE(metrics.await_unfinished_updates(1));
  EXPECT_EQ(metrics.get().longest, 500ms);
}

// --- concurrency ---

// N workers and M producers on K keys, on the real clock. Checks the two promises controllers rely
// on: no key is ever processed by two workers at once, and every add is followed by a processing
// of its key that started after it (so no change is ever missed). Bounded in count and in time.
TEST(WorkQueueStress, NoKeyIsProcessedConcurrentlyAndEveryAddIsProcessed) {
  constexpr int kWorkers = 8;
  constexpr int kProducers = 4;
  constexpr int kKeys = 32;
  constexpr int kAddsPerProducer = 2000;

  work_queue queue;
  std::vector<std::string> keys;
  keys.reserve(kKeys);
  for (int k = 0; k < kKeys; ++k) keys.push_back("ns/key-" + std::to_string(k));
  auto index_of = [](const std::string& key) { return std::stoi(key.substr(key.rfind('-') + 1)); };

  // adds[k] is bumped before each add of key k; a worker that takes key k records the count it sees
  // as covered[k]. A processing that starts after an add sees that add's count.
  std::vector<std::atomic<long>> adds(kKeys);
  std::vector<std::atomic<long>> covered(kKeys);
  std::vector<std::atomic<int>> active(kKeys);
  std::atomic<long> overlaps{0};
  std::atomic<long> processed{0};
  std::mutex progress_mu;
  std::condition_variable progress;

  std::vector<std::thread> workers;
  workers.reserve(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::minstd_rand rng(1000 + w);
      while (auto key = queue.get()) {
        const int k = index_of(*key);
        if (active[k].fetch_add(1) != 0) overlaps.fetch_add(1);
        const long seen = adds[k].load();
        long before = covered[k].load();
        while (before < seen && !covered[k].compare_exchange_weak(before, seen)) {
        }
        if (rng() % 8 == 0) {  // the object changed while being reconciled
          adds[k].fetch_add(1);
          queue.add(*key);
        }
        std::this_thread::yield();
        active[k].fetch_sub(1);
        processed.fetch_add(1);
        queue.done(*key);
        progress.notify_all();
      }
    });
  }

  std::vector<std::thread> producers;
  producers.reserve(kProducers);
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      std::minstd_rand rng(p);
      for (int i = 0; i < kAddsPerProducer; ++i) {
        // Paced, so that adds keep arriving while workers process rather than all before they start.
        std::this_thread::yield();
        const int k = static_cast<int>(rng() % kKeys);
        adds[k].fetch_add(1);
        if (rng() % 4 == 0) {
          queue.add_after(keys[k], std::chrono::microseconds(rng() % 500));
        } else {
          queue.add(keys[k]);
        }
      }
    });
  }
  for (auto& p : producers) p.join();

  auto all_covered = [&] {
    for (int k = 0; k < kKeys; ++k) {
      if (covered[k].load() != adds[k].load()) return false;
    }
    return true;
  };
  bool converged = false;
  {
    std::unique_lock lock(progress_mu);
    // Workers notify without the mutex, so wake at least every 10 ms to look again.
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (!(converged = all_covered()) && std::chrono::steady_clock::now() < give_up) {
      progress.wait_for(lock, 10ms);
    }
  }
  queue.shut_down();
  for (auto& w : workers) w.join();

  EXPECT_TRUE(converged) << "some add was never followed by a processing of its key";
  EXPECT_EQ(overlaps.load(), 0) << "a key was processed by two workers at once";
  long total_adds = 0;
  for (auto& a : adds) total_adds += a.load();
  EXPECT_GT(processed.load(), kKeys);
  EXPECT_LE(processed.load(), total_adds) << "de-duplication never makes more rounds than adds";
}

}  // namespace
}  // namespace datashare::runtime
