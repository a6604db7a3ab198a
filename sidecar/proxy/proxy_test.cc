// The sync proxy's decisions with a fake owner, a manual clock and a manual scheduler.
#include "sidecar/proxy/proxy.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

namespace datashare::sidecar::proxy {
namespace {

using namespace std::chrono_literals;
using time_point = std::chrono::steady_clock::time_point;
using metrics::sync_outcome;

// Records every GET; the test answers them when it wants, from the thread it wants.
class fake_owner : public owner_client {
 public:
  struct call {
    std::string target;
    time_point deadline;
    callback done;
  };
  void get(const std::string& target, time_point deadline, callback done) override {
    std::lock_guard lock(mu_);
    calls_.push_back({target, deadline, std::move(done)});
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return calls_.size();
  }
  std::string target(std::size_t i) {
    std::lock_guard lock(mu_);
    return calls_.at(i).target;
  }
  void answer(std::size_t i, fetch_result r) {
    callback cb;
    {
      std::lock_guard lock(mu_);
      cb = std::move(calls_.at(i).done);
    }
    cb(std::move(r));
  }
  void ok(std::size_t i, std::string body) {
    answer(i, {.outcome = fetch_result::kind::response, .status = 200, .body = std::move(body)});
  }
  void status(std::size_t i, unsigned s) { answer(i, {.outcome = fetch_result::kind::response, .status = s}); }

 private:
  std::mutex mu_;
  std::vector<call> calls_;
};

struct recorded {
  std::mutex mu;
  std::vector<sync_result> results;
  sync_proxy::callback sink() {
    return [this](const sync_result& r) {
      std::lock_guard lock(mu);
      results.push_back(r);
    };
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return results.size();
  }
  sync_result at(std::size_t i) {
    std::lock_guard lock(mu);
    return results.at(i);
  }
};

config::subscribe_spec products_policy() {
  config::subscribe_spec s;
  s.policy = "orders-products";
  s.product.name = "products";
  s.product.key = "id";
  s.product.fields = {{"id", config::field_type::string},
                      {"name", config::field_type::string},
                      {"price", config::field_type::number},
                      {"stock", config::field_type::integer}};
  s.mode = config::sharing_mode::sync;
  s.sync_fields = {"price", "stock"};
  s.owner_url = "http://owner:8080";
  s.owner_read_path = "/products/{key}";
  s.sync.timeout = 300ms;
  s.sync.retry_attempts = 2;
  s.sync.retry_backoff = 20ms;
  s.sync.breaker_consecutive_failures = 3;
  s.sync.breaker_open_for = 10s;
  s.sync.cache_ttl = 30s;
  s.sync.cache_max_entries = 100;
  s.sync.serve_stale_on_error = false;
  s.sync.max_in_flight = 8;
  return s;
}

class sync_proxy_test : public ::testing::Test {
 protected:
  void make(const config::subscribe_spec& spec) {
    auto owner = std::make_unique<fake_owner>();
    owner_ = owner.get();
    proxy_env env;
    env.now = [this] { return time_point{} + std::chrono::milliseconds(now_ms_.load()); };
    env.schedule = [this](std::chrono::milliseconds d, std::function<void()> fn) {
      std::lock_guard lock(mu_);
      scheduled_.emplace_back(d, std::move(fn));
    };
    env.jitter_seed = 7;
    proxy_ = std::make_unique<sync_proxy>(spec, spec.sync_fields, std::move(owner), metrics_.sync(spec.policy), env);
  }
  void advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }
  // Runs the oldest scheduled retry; returns its delay.
  std::chrono::milliseconds run_scheduled() {
    std::pair<std::chrono::milliseconds, std::function<void()>> next;
    {
      std::lock_guard lock(mu_);
      EXPECT_FALSE(scheduled_.empty());
      if (scheduled_.empty()) return {};
      next = std::move(scheduled_.front());
      scheduled_.erase(scheduled_.begin());
    }
    advance(next.first);
    next.second();
    return next.first;
  }
  std::size_t scheduled() {
    std::lock_guard lock(mu_);
    return scheduled_.size();
  }
  std::string metric_text() { return metrics_.serialize(); }

  metrics::registry metrics_;
  fake_owner* owner_ = nullptr;
  std::unique_ptr<sync_proxy> proxy_;
  std::atomic<long long> now_ms_{1000};
  std::mutex mu_;
  std::vector<std::pair<std::chrono::milliseconds, std::function<void()>>> scheduled_;
};

TEST_F(sync_proxy_test, ConcurrentMissesMakeOneOwnerCall) {
  make(products_policy());
  recorded out;
  std::vector<std::thread> callers;
  callers.reserve(4);
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 25; ++i) proxy_->read("p1", out.sink());
    });
  }
  for (auto& t : callers) t.join();
  ASSERT_EQ(owner_->count(), 1u);
  EXPECT_EQ(out.size(), 0u);
  owner_->ok(0, R"({"id":"p1","name":"Lamp","price":12.5,"stock":3,"secret":"x"})");
  ASSERT_EQ(out.size(), 100u);
  for (std::size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(out.at(i).status, 200u);
    EXPECT_EQ(nlohmann::json::parse(out.at(i).body), nlohmann::json::parse(R"({"price":12.5,"stock":3})"));
    EXPECT_EQ(out.at(i).from, source::owner);
  }
  proxy_->read("p1", out.sink());  // now cached
  EXPECT_EQ(owner_->count(), 1u);
  EXPECT_EQ(out.at(100).from, source::cache);
  EXPECT_NE(metric_text().find(R"(datashare_sync_cache_hits_total{policy="orders-products"} 1)"), std::string::npos);
  EXPECT_NE(metric_text().find(R"(datashare_sync_cache_misses_total{policy="orders-products"} 100)"),
            std::string::npos);
}

TEST_F(sync_proxy_test, KeyIsPercentEncodedInTheReadPath) {
  auto spec = products_policy();
  spec.owner_read_path = "/v1/items/{key}?view=full";
  make(spec);
  recorded out;
  proxy_->read("a/b c", out.sink());
  EXPECT_EQ(owner_->target(0), "/v1/items/a%2Fb%20c?view=full");
}

TEST_F(sync_proxy_test, RetriesWithGrowingJitteredBackoffInsideTheDeadline) {
  make(products_policy());
  recorded out;
  proxy_->read("p1", out.sink());
  owner_->status(0, 503);
  ASSERT_EQ(scheduled(), 1u);
  auto d1 = run_scheduled();
  EXPECT_GE(d1, 10ms);
  EXPECT_LE(d1, 20ms);
  ASSERT_EQ(owner_->count(), 2u);
  owner_->answer(1, {.outcome = fetch_result::kind::connect_error, .detail = "connection refused"});
  auto d2 = run_scheduled();
  EXPECT_GE(d2, 20ms);
  EXPECT_LE(d2, 40ms);
  ASSERT_EQ(owner_->count(), 3u);
  owner_->ok(2, R"({"price":1})");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.at(0).status, 200u);
  EXPECT_EQ(proxy_->circuit(), circuit_state::closed);  // 2 failures < 3
}

TEST_F(sync_proxy_test, GivesUpWhenTheBackoffWouldPassTheDeadline) {
  auto spec = products_policy();
  spec.sync.retry_backoff = 200ms;
  make(spec);
  recorded out;
  proxy_->read("p1", out.sink());
  owner_->status(0, 500);
  run_scheduled();  // 100..200 ms fits in 300 ms
  advance(50ms);
  owner_->status(1, 500);  // 200..400 ms more does not
  EXPECT_EQ(scheduled(), 0u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.at(0).status, 502u);
  auto body = nlohmann::json::parse(out.at(0).body);
  EXPECT_EQ(body["policy"], "orders-products");
  EXPECT_EQ(body["cause"], "the owner answered 500");
}

TEST_F(sync_proxy_test, TimeoutIs504AndNotRetried) {
  make(products_policy());
  recorded out;
  proxy_->read("p1", out.sink());
  owner_->answer(0, {.outcome = fetch_result::kind::timeout, .detail = "deadline"});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.at(0).status, 504u);
  EXPECT_EQ(out.at(0).outcome, sync_outcome::timeout);
  EXPECT_EQ(scheduled(), 0u);
}

TEST_F(sync_proxy_test, BreakerOpensFailsFastThenOneProbeClosesIt) {
  auto spec = products_policy();
  spec.sync.retry_attempts = 0;
  make(spec);
  recorded out;
  for (int i = 0; i < 3; ++i) {
    proxy_->read("k" + std::to_string(i), out.sink());
    owner_->status(static_cast<std::size_t>(i), 500);
  }
  EXPECT_EQ(proxy_->circuit(), circuit_state::open);
  proxy_->read("k9", out.sink());  // answered inline, no owner call
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out.at(3).status, 503u);
  EXPECT_EQ(out.at(3).outcome, sync_outcome::circuit_open);
  EXPECT_EQ(owner_->count(), 3u);
  EXPECT_NE(metric_text().find(R"(datashare_sync_circuit_state{policy="orders-products"} 2)"), std::string::npos);

  advance(10s);
  proxy_->read("k9", out.sink());  // the probe
  EXPECT_EQ(owner_->count(), 4u);
  EXPECT_EQ(proxy_->circuit(), circuit_state::half_open);
  EXPECT_NE(metric_text().find(R"(datashare_sync_circuit_state{policy="orders-products"} 1)"), std::string::npos);
  proxy_->read("k8", out.sink());  // refused while the probe is out
  EXPECT_EQ(out.at(4).outcome, sync_outcome::circuit_open);
  owner_->ok(3, R"({"price":2})");
  EXPECT_EQ(proxy_->circuit(), circuit_state::closed);
  EXPECT_NE(metric_text().find(R"(datashare_sync_circuit_state{policy="orders-products"} 0)"), std::string::npos);
  EXPECT_EQ(out.at(5).status, 200u);
  proxy_->read("k8", out.sink());
  EXPECT_EQ(owner_->count(), 5u);
}

TEST_F(sync_proxy_test, ServesStaleOnErrorAndWhenOpen) {
  auto spec = products_policy();
  spec.sync.serve_stale_on_error = true;
  spec.sync.cache_ttl = 1s;
  spec.sync.retry_attempts = 0;
  spec.sync.breaker_consecutive_failures = 1;
  make(spec);
  recorded out;
  proxy_->read("p1", out.sink());
  owner_->ok(0, R"({"price":3})");
  advance(2s);
  proxy_->read("p1", out.sink());
  owner_->status(1, 500);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out.at(1).status, 200u);
  EXPECT_EQ(out.at(1).from, source::stale_cache);
  EXPECT_EQ(out.at(1).age, 2s);
  EXPECT_EQ(out.at(1).body, R"({"price":3})");
  EXPECT_EQ(proxy_->circuit(), circuit_state::open);
  proxy_->read("p1", out.sink());  // open: stale at once
  EXPECT_EQ(out.at(2).from, source::stale_cache);
  EXPECT_EQ(owner_->count(), 2u);
  proxy_->read("p2", out.sink());  // nothing cached: 503
  EXPECT_EQ(out.at(3).status, 503u);
  EXPECT_NE(metric_text().find(R"(datashare_sync_fallback_total{policy="orders-products",reason="stale_on_error"} 2)"),
            std::string::npos);
}

TEST_F(sync_proxy_test, MalformedAnswersAreErrorsAndNeverCached) {
  auto spec = products_policy();
  spec.sync.breaker_consecutive_failures = 10;
  make(spec);
  recorded out;
  const char* bad[] = {"not json", "[1,2]", R"({"price":"cheap"})", R"({"stock":1.5})"};
  for (std::size_t i = 0; i < 4; ++i) {
    proxy_->read("p1", out.sink());
    owner_->ok(i, bad[i]);
    ASSERT_EQ(out.size(), i + 1);
    EXPECT_EQ(out.at(i).status, 502u) << bad[i];
    EXPECT_EQ(out.at(i).outcome, sync_outcome::malformed);
  }
  EXPECT_NE(nlohmann::json::parse(out.at(2).body)["cause"].get<std::string>().find("\"price\""), std::string::npos);
  EXPECT_EQ(scheduled(), 0u);  // not retried
  proxy_->read("p1", out.sink());
  EXPECT_EQ(owner_->count(), 5u);  // nothing was cached
  owner_->ok(4, R"({"price":1,"stock":2.0,"name":null})");
  EXPECT_EQ(out.at(4).status, 200u);
}

TEST_F(sync_proxy_test, Owner404Is404AndDropsTheCachedValue) {
  auto spec = products_policy();
  spec.sync.serve_stale_on_error = true;
  spec.sync.cache_ttl = 1s;
  make(spec);
  recorded out;
  proxy_->read("p1", out.sink());
  owner_->ok(0, R"({"price":3})");
  advance(2s);
  proxy_->read("p1", out.sink());
  owner_->status(1, 404);
  EXPECT_EQ(out.at(1).status, 404u);
  EXPECT_EQ(proxy_->circuit(), circuit_state::closed);
  proxy_->read("p1", out.sink());
  owner_->status(2, 500);
  run_scheduled();
  owner_->status(3, 500);
  run_scheduled();
  owner_->status(4, 500);
  EXPECT_EQ(out.at(2).status, 502u);  // no stale value after a 404
}

TEST_F(sync_proxy_test, BulkheadFailsFastBeyondMaxInFlight) {
  auto spec = products_policy();
  spec.sync.max_in_flight = 2;
  make(spec);
  recorded out;
  proxy_->read("a", out.sink());
  proxy_->read("b", out.sink());
  EXPECT_NE(metric_text().find(R"(datashare_sync_inflight{policy="orders-products"} 2)"), std::string::npos);
  proxy_->read("c", out.sink());
  EXPECT_EQ(owner_->count(), 2u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out.at(0).status, 503u);
  EXPECT_EQ(out.at(0).outcome, sync_outcome::bulkhead_full);
  owner_->ok(0, "{}");
  EXPECT_NE(metric_text().find(R"(datashare_sync_inflight{policy="orders-products"} 1)"), std::string::npos);
  proxy_->read("c", out.sink());
  EXPECT_EQ(owner_->count(), 3u);
  owner_->ok(1, "{}");
  owner_->ok(2, "{}");
  EXPECT_NE(metric_text().find(R"(datashare_sync_inflight{policy="orders-products"} 0)"), std::string::npos);
}

TEST_F(sync_proxy_test, MaxAgeBoundsWhatACacheHitMayBe) {
  make(products_policy());
  recorded out;
  proxy_->read("p1", out.sink());
  owner_->ok(0, R"({"price":3})");
  advance(5s);
  proxy_->read("p1", out.sink(), 10s);
  EXPECT_EQ(owner_->count(), 1u);
  proxy_->read("p1", out.sink(), 1s);
  EXPECT_EQ(owner_->count(), 2u);
}

TEST(SyncProxyProjection, KeepsOnlyTheFieldsAsked) {
  auto spec = products_policy();
  std::string out, error;
  ASSERT_TRUE(sync_proxy::project(R"({"id":"p","price":1,"secret":"s"})", spec.product, {"id", "price"}, out, error));
  EXPECT_EQ(out, R"({"id":"p","price":1})");
  EXPECT_FALSE(sync_proxy::project(R"({"id":7})", spec.product, {"id"}, out, error));
  EXPECT_NE(error.find("type string"), std::string::npos);
}

TEST(SyncProxyProjection, CopiesValuesAsTheOwnerWroteThemInThePolicysOrder) {
  auto spec = products_policy();
  std::string out, error;
  // The policy's order, not the owner's; the last of a repeated name; an escaped name; null
  // and absent fields left out; nested values and number spellings kept as written.
  ASSERT_TRUE(sync_proxy::project(
      R"( {"price" : 1.50, "stock":2.0, "id":"a","id":"b\u00e9", "n\u0061me":"Lamp", "extra":{"x": [1, 2]}, "secret":null} )",
      spec.product, {"id", "name", "extra", "price", "stock", "secret", "missing"}, out, error))
      << error;
  EXPECT_EQ(out, R"({"id":"b\u00e9","name":"Lamp","extra":{"x": [1, 2]},"price":1.50,"stock":2.0})");
  EXPECT_TRUE(nlohmann::json::accept(out));
}

TEST(SyncProxyProjection, RefusesWhatIsNotAJsonObjectOrHasAWrongType) {
  auto spec = products_policy();
  std::string out, error;
  EXPECT_FALSE(sync_proxy::project(R"({"id":"a",})", spec.product, {"id"}, out, error));
  EXPECT_EQ(error, "the owner's answer is not JSON");
  EXPECT_FALSE(sync_proxy::project("[1]", spec.product, {"id"}, out, error));
  EXPECT_EQ(error, "the owner's answer is not a JSON object");
  EXPECT_FALSE(sync_proxy::project("{\"id\":\"\xff\"}", spec.product, {"id"}, out, error)) << "invalid UTF-8";
  EXPECT_FALSE(sync_proxy::project(R"({"stock":2.5})", spec.product, {"stock"}, out, error));
  EXPECT_NE(error.find("\"stock\""), std::string::npos);
  EXPECT_FALSE(sync_proxy::project(R"({"price":"1"})", spec.product, {"price"}, out, error));
}

}  // namespace
}  // namespace datashare::sidecar::proxy
