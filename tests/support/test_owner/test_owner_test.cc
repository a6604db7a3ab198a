// datashare-test-owner as a process: data API, injected delays and failures, counters.
#include "tests/support/test_owner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

namespace datashare::testing {
namespace {

using namespace std::chrono_literals;

TEST(TestOwner, StoresServesAndDeletesJsonObjects) {
  test_owner owner;
  EXPECT_EQ(owner.call("GET", "/products/p1").status, 404);
  auto put = owner.call("PUT", "/products/p1", R"({"id":"p1","price":3.5})");
  ASSERT_EQ(put.status, 200);
  EXPECT_EQ(nlohmann::json::parse(put.body)["price"], 3.5);
  auto get = owner.call("GET", "/products/p1");
  ASSERT_EQ(get.status, 200);
  EXPECT_EQ(nlohmann::json::parse(get.body), nlohmann::json::parse(R"({"id":"p1","price":3.5})"));
  EXPECT_EQ(owner.call("PUT", "/products/p2", "[1]").status, 400);
  EXPECT_EQ(owner.call("PUT", "/products/p2", "not json").status, 400);
  EXPECT_EQ(owner.call("DELETE", "/products/p1").status, 204);
  EXPECT_EQ(owner.call("DELETE", "/products/p1").status, 404);
  EXPECT_EQ(owner.call("GET", "/other/p1").status, 404);
  auto s = owner.stats();
  EXPECT_EQ(s.gets, 2U);  // /other/p1 is no data request
  EXPECT_EQ(s.puts, 3U);
  EXPECT_EQ(s.deletes, 2U);
  EXPECT_EQ(s.inflight, 0U);
}

TEST(TestOwner, KeysArePercentDecodedAndSeedIsRaw) {
  test_owner owner("/v2/items/{key}/detail");
  owner.seed("a/b c", "not json at all");
  auto r = owner.call("GET", "/v2/items/a%2Fb%20c/detail");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "not json at all");
  EXPECT_EQ(owner.stats().gets, 1U);
  EXPECT_EQ(owner.stats().puts, 0U);  // seeding is not counted
}

TEST(TestOwner, InjectedFailures) {
  test_owner owner;
  owner.seed("k", R"({"id":"k"})");
  owner.fail_next(2, 503);
  EXPECT_EQ(owner.call("GET", "/products/k").status, 503);
  EXPECT_EQ(owner.call("GET", "/products/k").status, 503);
  EXPECT_EQ(owner.call("GET", "/products/k").status, 200);
  owner.fail(500);
  EXPECT_EQ(owner.call("GET", "/products/k").status, 500);
  owner.fail(0);
  auto closed = owner.call("GET", "/products/k");
  EXPECT_EQ(closed.status, 0) << closed.body;
  owner.recover();
  EXPECT_EQ(owner.call("GET", "/products/k").status, 200);
  EXPECT_EQ(owner.call("POST", "/control/fail?status=42").status, 400);
  EXPECT_EQ(owner.call("POST", "/control/delay?ms=x").status, 400);
  owner.reset();
  EXPECT_EQ(owner.call("GET", "/products/k").status, 404);
  EXPECT_EQ(owner.stats().gets, 1U);
}

TEST(TestOwner, DelayedRequestsAreServedConcurrently) {
  test_owner owner("/products/{key}", 1);  // one I/O thread: delays must still overlap
  owner.seed("k", R"({"id":"k"})");
  owner.delay(300ms);
  constexpr int kCallers = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  callers.reserve(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&] {
      if (owner.call("GET", "/products/k").status == 200) ++ok;
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok.load(), kCallers);
  auto s = owner.stats();
  EXPECT_EQ(s.gets, static_cast<std::uint64_t>(kCallers));
  EXPECT_EQ(s.inflight, 0U);
  // Serialized, one request would be in flight at a time.
  EXPECT_GT(s.max_inflight, 1U);
}

TEST(TestOwner, RefusesBadFlags) {
  EXPECT_THROW(test_owner("products/{key}"), std::runtime_error);
  EXPECT_THROW(test_owner("/products/{key}/{key}"), std::runtime_error);
}

TEST(TestOwner, KilledOwnerRefusesConnections) {
  test_owner owner;
  const auto port = owner.port();
  owner.kill();
  EXPECT_EQ(http_call(port, "GET", "/products/k").status, 0);
}

}  // namespace
}  // namespace datashare::testing
