#include "sidecar/proxy/breaker.h"

#include <gtest/gtest.h>

namespace datashare::sidecar::proxy {
namespace {

using namespace std::chrono_literals;
using time_point = std::chrono::steady_clock::time_point;

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresOnly) {
  circuit_breaker b(3, 10s);
  time_point t{};
  EXPECT_TRUE(b.allow(t));
  b.on_failure(t);
  b.on_failure(t);
  b.on_success();  // resets the count
  b.on_failure(t);
  b.on_failure(t);
  EXPECT_EQ(b.state(), circuit_state::closed);
  b.on_failure(t);
  EXPECT_EQ(b.state(), circuit_state::open);
  EXPECT_FALSE(b.allow(t + 9s));
}

TEST(CircuitBreaker, OneProbeAfterOpenForThenCloses) {
  circuit_breaker b(1, 10s);
  time_point t{};
  b.on_failure(t);
  ASSERT_EQ(b.state(), circuit_state::open);
  EXPECT_FALSE(b.allow(t + 9999ms));
  EXPECT_TRUE(b.allow(t + 10s));  // the probe
  EXPECT_EQ(b.state(), circuit_state::half_open);
  EXPECT_FALSE(b.allow(t + 10s));  // only one at a time
  EXPECT_FALSE(b.allow(t + 11s));
  b.on_success();
  EXPECT_EQ(b.state(), circuit_state::closed);
  EXPECT_TRUE(b.allow(t + 11s));
}

TEST(CircuitBreaker, FailedProbeReopensForAnotherPeriod) {
  circuit_breaker b(2, 5s);
  time_point t{};
  b.on_failure(t);
  b.on_failure(t);
  ASSERT_TRUE(b.allow(t + 5s));
  b.on_failure(t + 6s);
  EXPECT_EQ(b.state(), circuit_state::open);
  EXPECT_FALSE(b.allow(t + 10s));
  EXPECT_TRUE(b.allow(t + 11s));
}

TEST(CircuitBreaker, LateFailuresOfAnOpenCircuitDoNotExtendIt) {
  circuit_breaker b(1, 5s);
  time_point t{};
  b.on_failure(t);
  b.on_failure(t + 4s);  // a call allowed before it opened, failing late
  EXPECT_TRUE(b.allow(t + 5s));
}

}  // namespace
}  // namespace datashare::sidecar::proxy
