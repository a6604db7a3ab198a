#include "sidecar/proxy/cache.h"

#include <gtest/gtest.h>

namespace datashare::sidecar::proxy {
namespace {

using namespace std::chrono_literals;
using time_point = std::chrono::steady_clock::time_point;

TEST(TtlCache, FreshThenStaleThenStillThere) {
  ttl_cache c(10, 30s);
  time_point t{};
  EXPECT_FALSE(c.get("a", t));
  c.put("a", "1", t);
  auto h = c.get("a", t + 29s);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->fresh);
  EXPECT_EQ(h->value, "1");
  EXPECT_EQ(h->age, 29s);
  h = c.get("a", t + 31s);
  ASSERT_TRUE(h);  // kept for serveStaleOnError
  EXPECT_FALSE(h->fresh);
}

TEST(TtlCache, EvictsLeastRecentlyUsed) {
  ttl_cache c(2, 30s);
  time_point t{};
  c.put("a", "1", t);
  c.put("b", "2", t);
  ASSERT_TRUE(c.get("a", t));  // a is now the most recent
  c.put("c", "3", t);
  EXPECT_TRUE(c.get("a", t));
  EXPECT_FALSE(c.get("b", t));
  EXPECT_TRUE(c.get("c", t));
  EXPECT_EQ(c.size(), 2u);
}

TEST(TtlCache, BoundHoldsWithShards) {
  ttl_cache c(2048, 30s);
  time_point t{};
  for (int i = 0; i < 10000; ++i) c.put("k" + std::to_string(i), "v", t);
  EXPECT_LE(c.size(), 2048u);
  EXPECT_GT(c.size(), 1000u);
}

TEST(TtlCache, OlderFetchDoesNotReplaceNewer) {
  ttl_cache c(10, 30s);
  time_point t{};
  c.put("a", "new", t + 2s);
  c.put("a", "old", t + 1s);
  EXPECT_EQ(c.get("a", t + 2s)->value, "new");
}

TEST(TtlCache, ZeroEntriesDisables) {
  ttl_cache c(0, 30s);
  c.put("a", "1", time_point{});
  EXPECT_FALSE(c.get("a", time_point{}));
}

TEST(TtlCache, Erase) {
  ttl_cache c(10, 30s);
  c.put("a", "1", time_point{});
  c.erase("a");
  EXPECT_FALSE(c.get("a", time_point{}));
  c.erase("zz");
}

}  // namespace
}  // namespace datashare::sidecar::proxy
