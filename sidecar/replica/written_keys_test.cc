#include "sidecar/replica/written_keys.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace datashare::sidecar::replica {
namespace {

std::string key(int i) {
  return "key:" + std::to_string(i);
}

TEST(WrittenKeysTest, NeverForgetsAKeyAndRarelyClaimsOneItNeverSaw) {
  written_keys w(10000);
  for (int i = 0; i < 10000; ++i) w.add(key(i));
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(w.may_contain(key(i))) << key(i);
  int false_positives = 0;
  for (int i = 10000; i < 110000; ++i) false_positives += w.may_contain(key(i)) ? 1 : 0;
  EXPECT_LT(false_positives, 3000);  // ~1 % expected of 100,000
  EXPECT_FALSE(written_keys(10).may_contain("never"));
}

TEST(WrittenKeysTest, OverfilledItStillHasNoFalseNegatives) {
  written_keys w(10);  // one block, far more keys
  for (int i = 0; i < 5000; ++i) w.add(key(i));
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(w.may_contain(key(i))) << key(i);
  EXPECT_EQ(w.bytes(), 64u);
}

TEST(WrittenKeysTest, TestAndAddAnswersAsMayContainBeforeTheAdd) {
  written_keys a(1000), b(1000);
  for (int i = 0; i < 3000; ++i) {  // overfilled on purpose: some "maybe" answers are false positives
    const std::string k = key(i % 2000);
    const bool before = a.may_contain(k);
    a.add(k);
    ASSERT_EQ(b.test_and_add(k), before) << k;
    ASSERT_TRUE(b.may_contain(k)) << k;
  }
}

// The replica's workers share one filter: keys added by several threads at once are all kept.
TEST(WrittenKeysTest, KeysAddedFromSeveralThreadsAtOnceAreAllKept) {
  written_keys w(4000);  // full: the threads' keys share blocks and words
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&w, t] {
      for (int i = t; i < 4000; i += 4) {
        if (i % 2 == 0) {
          w.add(key(i));
        } else {
          (void)w.test_and_add(key(i));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4000; ++i) ASSERT_TRUE(w.may_contain(key(i))) << key(i);
}

TEST(WrittenKeysTest, SizeIsCapped) {
  written_keys w(std::size_t{1} << 40);
  EXPECT_EQ(w.bytes(), written_keys::kMaxBytes);
  w.add("a");
  EXPECT_TRUE(w.may_contain("a"));
}

}  // namespace
}  // namespace datashare::sidecar::replica
