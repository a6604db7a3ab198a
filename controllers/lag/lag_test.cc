#include "controllers/lag/lag.h"

#include <gtest/gtest.h>

namespace datashare::controllers {
namespace {

using namespace std::chrono_literals;
const wall_time t0 = wall_time{} + std::chrono::hours(24 * 365 * 50);

TEST(Lag, CaughtUpIsZero) {
  std::map<int32_t, watermark_history> h;
  h[0].record(t0, 100);
  auto e = estimate_lag({{0, 100}}, {{0, 100}}, h, t0 + 5s);
  EXPECT_EQ(e.events, 0);
  EXPECT_EQ(e.seconds, 0);
  EXPECT_TRUE(e.committed);
}

TEST(Lag, InterpolatesWhenTheLogEndPassedTheCommittedOffset) {
  std::map<int32_t, watermark_history> h;
  h[0].record(t0, 100);
  h[0].record(t0 + 10s, 200);  // offsets 100..199 appended during these 10 s
  h[0].record(t0 + 20s, 200);
  // Committed 150: offset 150 was appended about 5.1 s after t0; now is t0+20s.
  auto e = estimate_lag({{0, 150}}, {{0, 200}}, h, t0 + 20s);
  EXPECT_EQ(e.events, 50);
  EXPECT_NEAR(e.seconds, 14.9, 0.01);
  EXPECT_FALSE(e.lower_bound);
}

TEST(Lag, MaxOverPartitionsSumOfEvents) {
  std::map<int32_t, watermark_history> h;
  h[0].record(t0, 10);
  h[1].record(t0, 0);
  h[1].record(t0 + 30s, 4);
  auto e = estimate_lag({{0, 10}, {1, 0}}, {{0, 10}, {1, 4}}, h, t0 + 40s);
  EXPECT_EQ(e.events, 4);
  EXPECT_NEAR(e.seconds, 40 - 7.5, 0.01);
}

TEST(Lag, OlderThanTheHistoryIsALowerBound) {
  std::map<int32_t, watermark_history> h;
  h[0].record(t0, 1000);
  auto e = estimate_lag({}, {{0, 1000}}, h, t0 + 3s);
  EXPECT_EQ(e.events, 1000);  // nothing committed: the whole partition
  EXPECT_FALSE(e.committed);
  EXPECT_NEAR(e.seconds, 3, 0.01);
  EXPECT_TRUE(e.lower_bound);
}

TEST(Lag, HistoryIsBoundedAndFoldsIdleSamples) {
  watermark_history h(4);
  for (int i = 0; i < 100; ++i) h.record(t0 + std::chrono::seconds(i), 5);  // idle: folded
  auto p = h.when_passed(4);
  EXPECT_EQ(p.at, t0);  // the first time 5 was seen is kept
  for (int i = 0; i < 10; ++i) h.record(t0 + std::chrono::seconds(200 + i), 10 + i);
  EXPECT_TRUE(h.when_passed(0).lower_bound);  // the oldest samples were dropped
}

}  // namespace
}  // namespace datashare::controllers
