#include "operator/runtime/manager.h"

#include <cpprest/http_client.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <future>

#include "operator/kube/fake_transport.h"
#include "tests/support/eventually.h"

namespace datashare::runtime {
namespace {
using kube::json;
using ::testing::HasSubstr;

using datashare::testing::eventually;

std::pair<int, std::string> get(uint16_t port, const std::string& path) {
  web::http::client::http_client c("http://127.0.0.1:" + std::to_string(port));
  auto resp = c.request(web::http::methods::GET, path).get();
  return {resp.status_code(), resp.extract_utf8string(true).get()};
}

class ManagerTest : public ::testing::Test {
 protected:
  std::shared_ptr<kube::testing::fake_transport> transport_ = std::make_shared<kube::testing::fake_transport>();
  kube::client client_{transport_, {.sleep = [](std::chrono::milliseconds) {}}};
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
};

TEST_F(ManagerTest, ControllersStartAfterCachesSyncAndLeadershipAndStopGracefully) {
  std::promise<void> lead;
  std::shared_future<void> lead_future = lead.get_future().share();
  std::atomic<bool> released{false};
  std::atomic<int> reconciles{0};
  manager m(registry_, {.metrics_bind_address = "127.0.0.1:0",
                        .health_probe_bind_address = "127.0.0.1:0",
                        .acquire_leadership =
                            [lead_future](std::stop_token stop, std::function<void()>) {
                              while (!stop.stop_requested()) {
                                if (lead_future.wait_for(std::chrono::milliseconds(5)) == std::future_status::ready) {
                                  return true;
                                }
                              }
                              return false;
                            },
                        .release_leadership = [&] { released = true; }});
  auto& inf =
      m.add_informer(std::make_unique<informer>(client_, watcher_options{.kind = kube::resources::config_maps}));
  auto& c = m.add_controller(std::make_unique<controller>(controller_options{.name = "cms", .registry = &m.registry()},
                                                          [&](const request&) -> reconcile_result {
                                                            ++reconciles;
                                                            return {};
                                                          }));
  c.watch_for(inf);

  std::future<int> exit_code = std::async(std::launch::async, [&] { return m.run(); });
  ASSERT_TRUE(eventually([&] { return m.health_port() != 0; }));
  EXPECT_EQ(get(m.health_port(), "/healthz").first, 200);
  EXPECT_EQ(get(m.health_port(), "/readyz").first, 503) << "not ready before the caches sync";

  transport_->push(
      {200,
       R"({"metadata":{"resourceVersion":"3"},"items":[{"metadata":{"name":"a","namespace":"n","resourceVersion":"2"}}]})"});
  ASSERT_TRUE(eventually([&] { return get(m.health_port(), "/readyz").first == 200; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(reconciles, 0) << "no reconcile before this process leads";
  EXPECT_FALSE(m.leading());

  lead.set_value();
  ASSERT_TRUE(eventually([&] { return reconciles == 1; }));
  EXPECT_TRUE(m.leading());
  auto [status, metrics] = get(m.metrics_port(), "/metrics");
  EXPECT_EQ(status, 200);
  EXPECT_THAT(metrics, HasSubstr("controller_runtime_reconcile_total{controller=\"cms\",result=\"success\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("workqueue_adds_total"));
  // The exposition is valid for Prometheus' own checker (promtool is installed by install-deps).
  const std::string file = ::testing::TempDir() + "/manager-metrics.txt";
  { std::ofstream(file) << metrics; }
  EXPECT_EQ(std::system(("promtool check metrics < " + file + " > /dev/null").c_str()), 0)
      << "promtool check metrics rejected:\n"
      << metrics;

  m.request_stop();
  EXPECT_EQ(exit_code.get(), 0);
  EXPECT_TRUE(released) << "the Lease is released on a graceful stop";
}

TEST_F(ManagerTest, LostLeadershipStopsTheProcessWithAnError) {
  std::function<void()> lose;
  std::mutex mu;
  manager m(registry_, {.metrics_bind_address = "0",
                        .health_probe_bind_address = "0",
                        .acquire_leadership = [&](std::stop_token, std::function<void()> lost) {
                          std::lock_guard l(mu);
                          lose = std::move(lost);
                          return true;
                        }});
  std::future<int> exit_code = std::async(std::launch::async, [&] { return m.run(); });
  ASSERT_TRUE(eventually([&] { return m.leading(); }));
  {
    std::lock_guard l(mu);
    lose();
  }
  EXPECT_EQ(exit_code.get(), 1);
}

TEST_F(ManagerTest, RejectsAMalformedBindAddress) {
  manager m(registry_, {.metrics_bind_address = "no-port-here", .health_probe_bind_address = "0"});
  EXPECT_THROW(m.run(), std::invalid_argument);
}

}  // namespace
}  // namespace datashare::runtime
