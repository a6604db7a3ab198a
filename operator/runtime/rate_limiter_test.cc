#include "operator/runtime/rate_limiter.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>
#include <vector>

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;

TEST(ItemExponentialRateLimiter, DoublesFromFiveMillisecondsPerKey) {
  item_exponential_rate_limiter limiter;
  EXPECT_EQ(limiter.when("ns/a"), 5ms);
  EXPECT_EQ(limiter.when("ns/a"), 10ms);
  EXPECT_EQ(limiter.when("ns/a"), 20ms);
  EXPECT_EQ(limiter.when("ns/a"), 40ms);
  // Keys back off independently.
  EXPECT_EQ(limiter.when("ns/b"), 5ms);
  EXPECT_EQ(limiter.when("ns/a"), 80ms);
  EXPECT_EQ(limiter.num_requeues("ns/a"), 5);
  EXPECT_EQ(limiter.num_requeues("ns/b"), 1);
  EXPECT_EQ(limiter.num_requeues("ns/never"), 0);
}

TEST(ItemExponentialRateLimiter, CapsAtOneThousandSeconds) {
  item_exponential_rate_limiter limiter;
  // 5 ms · 2^17 = 655.36 s is the last step under the cap; 2^18 would be 1310.72 s.
  for (int i = 0; i < 17; ++i) limiter.when("k");
  EXPECT_EQ(limiter.when("k"), 655360ms);
  EXPECT_EQ(limiter.when("k"), 1000s);
  // Far past the point where 5 ms · 2^n overflows 64-bit nanoseconds.
  for (int i = 0; i < 200; ++i) EXPECT_EQ(limiter.when("k"), 1000s);
}

TEST(ItemExponentialRateLimiter, ForgetStartsTheBackoffOver) {
  item_exponential_rate_limiter limiter;
  limiter.when("k");
  limiter.when("k");
  limiter.forget("k");
  EXPECT_EQ(limiter.num_requeues("k"), 0);
  EXPECT_EQ(limiter.when("k"), 5ms);
}

TEST(ItemExponentialRateLimiter, RejectsNonsenseBounds) {
  EXPECT_THROW(item_exponential_rate_limiter(0ms, 1s), std::invalid_argument);
  EXPECT_THROW(item_exponential_rate_limiter(2s, 1s), std::invalid_argument);
}

TEST(BucketRateLimiter, GivesTheBurstThenOneTokenPerTenthOfASecond) {
  manual_clock clock;
  bucket_rate_limiter limiter(10, 100, clock);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(limiter.when("k" + std::to_string(i)), 0ms) << i;
  // The bucket is empty: each further call reserves the next token to be refilled.
  EXPECT_EQ(limiter.when("x"), 100ms);
  EXPECT_EQ(limiter.when("y"), 200ms);
  EXPECT_EQ(limiter.when("z"), 300ms);
  // One second refills ten tokens, three of which were already promised.
  clock.advance(1s);
  for (int i = 0; i < 7; ++i) ASSERT_EQ(limiter.when("k"), 0ms) << i;
  EXPECT_EQ(limiter.when("k"), 100ms);
  // Keys are not tracked.
  EXPECT_EQ(limiter.num_requeues("k"), 0);
  limiter.forget("k");
  EXPECT_EQ(limiter.when("k"), 200ms);
}

TEST(BucketRateLimiter, RefillsNoFurtherThanTheBurst) {
  manual_clock clock;
  bucket_rate_limiter limiter(10, 100, clock);
  clock.advance(1h);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(limiter.when("k"), 0ms) << i;
  EXPECT_EQ(limiter.when("k"), 100ms);
}

TEST(BucketRateLimiter, ARateOfFractionalTokensRoundsTheWaitUp) {
  manual_clock clock;
  bucket_rate_limiter limiter(3, 1, clock);
  EXPECT_EQ(limiter.when("k"), 0ms);
  // 1/3 s is not a whole number of nanoseconds: never come back before the token is there.
  EXPECT_EQ(limiter.when("k"), 333333334ns);
}

TEST(BucketRateLimiter, RejectsNonsenseRates) {
  manual_clock clock;
  EXPECT_THROW(bucket_rate_limiter(0, 10, clock), std::invalid_argument);
  EXPECT_THROW(bucket_rate_limiter(10, 0, clock), std::invalid_argument);
}

TEST(MaxOfRateLimiter, TakesTheLongestDelayAndForwardsForget) {
  manual_clock clock;
  std::vector<std::unique_ptr<rate_limiter>> parts;
  parts.push_back(std::make_unique<item_exponential_rate_limiter>(1ms, 1s));
  parts.push_back(std::make_unique<bucket_rate_limiter>(1, 2, clock));
  max_of_rate_limiter limiter(std::move(parts));

  EXPECT_EQ(limiter.when("k"), 1ms);     // backoff 1 ms, bucket 0
  EXPECT_EQ(limiter.when("k"), 2ms);     // backoff 2 ms, bucket 0 (burst of 2 spent)
  EXPECT_EQ(limiter.when("k"), 1000ms);  // backoff 4 ms, bucket 1 s
  EXPECT_EQ(limiter.num_requeues("k"), 3);
  limiter.forget("k");
  EXPECT_EQ(limiter.num_requeues("k"), 0);
  clock.advance(10s);
  EXPECT_EQ(limiter.when("k"), 1ms);
}

TEST(MaxOfRateLimiter, NeedsAtLeastOneLimiter) {
  EXPECT_THROW(max_of_rate_limiter({}), std::invalid_argument);
}

TEST(DefaultControllerRateLimiter, IsBackoffUntilTheBucketRunsDry) {
  manual_clock clock;
  auto limiter = default_controller_rate_limiter(clock);
  // One failure each of 100 keys: the per-key backoff (5 ms) dominates an untouched bucket.
  for (int i = 0; i < 100; ++i) ASSERT_EQ(limiter->when("ns/k" + std::to_string(i)), 5ms) << i;
  // The 101st failure in the same instant waits for the bucket: 100 ms.
  EXPECT_EQ(limiter->when("ns/k100"), 100ms);
  // One key failing over and over: its own backoff, 5 ms · 2^n, once the bucket has refilled.
  clock.advance(1h);
  EXPECT_EQ(limiter->when("ns/k0"), 10ms);
  EXPECT_EQ(limiter->when("ns/k0"), 20ms);
  EXPECT_EQ(limiter->num_requeues("ns/k0"), 3);
  limiter->forget("ns/k0");
  EXPECT_EQ(limiter->when("ns/k0"), 5ms);
}

TEST(DefaultControllerRateLimiter, IsSafeToShareBetweenThreads) {
  auto limiter = default_controller_rate_limiter();
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&limiter, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string key = "ns/" + std::to_string((t * 7 + i) % 10);
        limiter->when(key);
        if (i % 5 == 0) limiter->forget(key);
        limiter->num_requeues(key);
      }
    });
  }
  for (auto& t : threads) t.join();
  SUCCEED();  // the assertion is ThreadSanitizer's silence
}

}  // namespace
}  // namespace datashare::runtime
