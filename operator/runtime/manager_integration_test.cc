// The manager as a process (manager_probe) against the real API server: with --leader-elect only
// the leader reconciles; kill -9 of the leader hands the Lease over within the lease duration;
// SIGTERM stops gracefully and releases the Lease; /metrics passes promtool and reports the
// leader gauge; /readyz answers once the caches are in sync.
#include <cpprest/http_client.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"
#include "tests/support/child_process.h"
#include "tests/support/cluster_env.h"

namespace datashare::runtime {
namespace {
using datashare::testing::child_process;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Leader-election timings multiplied by DATASHARE_TEST_TIME_SCALE (default 1): a ThreadSanitizer
// build runs several times slower, and a leader that cannot renew within the renew deadline
// rightly steps down (the tsan/ suites set 3).
int time_scale() {
  const char* v = std::getenv("DATASHARE_TEST_TIME_SCALE");
  int n = v != nullptr ? std::atoi(v) : 1;
  return n > 0 ? n : 1;
}
std::string seconds(int n) {
  return std::to_string(n * time_scale()) + "s";
}

std::string probe_path() {
  const char* dir = std::getenv("DATASHARE_BINARY_DIR");
  if (dir == nullptr) throw std::runtime_error("DATASHARE_BINARY_DIR is not set: run through ctest");
  return std::string(dir) + "/bin/manager_probe";
}

std::pair<int, std::string> http_get(const std::string& port, const std::string& path) {
  web::http::client::http_client c("http://127.0.0.1:" + port);
  auto resp = c.request(web::http::methods::GET, path).get();
  return {resp.status_code(), resp.extract_utf8string(true).get()};
}

class ManagerIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kubeconfig_ = datashare::testing::require_env("KUBECONFIG");
    client_ =
        std::make_unique<kube::client>(std::make_shared<kube::cpprest_transport>(kube::load_kubeconfig({kubeconfig_})));
    ns_ = "manager-it-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000000);
    client_->create(kube::resources::namespaces, {{"metadata", {{"name", ns_}}}});
  }
  void TearDown() override { client_->remove(kube::resources::namespaces, "", ns_); }

  std::unique_ptr<child_process> start() {
    return std::make_unique<child_process>(
        probe_path(),
        std::vector<std::string>{"--kubeconfig=" + kubeconfig_, "--leader-elect", "--leader-election-id=manager-it",
                                 "--leader-election-namespace=" + ns_, "--leader-elect-lease-duration=" + seconds(3),
                                 "--leader-elect-renew-deadline=" + seconds(2),
                                 "--leader-elect-retry-period=" + std::to_string(500 * time_scale()) + "ms",
                                 "--metrics-bind-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0",
                                 "--watch-namespace=" + ns_, "--zap-log-level=warn"});
  }
  void create_config_map(const std::string& name) {
    client_->create(kube::resources::config_maps, {{"metadata", {{"name", name}, {"namespace", ns_}}}});
  }

  std::string kubeconfig_;
  std::unique_ptr<kube::client> client_;
  std::string ns_;
};

TEST_F(ManagerIntegrationTest, OnlyTheLeaderReconcilesAndTheLeaseMovesOnCrashAndOnStop) {
  auto a = start();
  auto a_metrics = a->line_after("metrics-port ", 30s);
  auto a_health = a->line_after("health-port ", 30s);
  ASSERT_TRUE(a_metrics && a_health) << a->output();
  create_config_map("first");
  ASSERT_TRUE(a->wait_line("reconciled " + ns_ + "/first", 30s)) << a->output();

  auto b = start();
  auto b_health = b->line_after("health-port ", 30s);
  ASSERT_TRUE(b_health) << b->output();
  // B syncs its caches (ready) but does not lead, so it does not reconcile.
  for (int i = 0; i < 100 * time_scale() && http_get(*b_health, "/readyz").first != 200; ++i)
    std::this_thread::sleep_for(100ms);
  EXPECT_EQ(http_get(*b_health, "/readyz").first, 200);
  create_config_map("second");
  ASSERT_TRUE(a->wait_line("reconciled " + ns_ + "/second", 30s));
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(b->has_line("reconciled ")) << b->output();

  auto [status, metrics] = http_get(*a_metrics, "/metrics");
  ASSERT_EQ(status, 200);
  EXPECT_THAT(metrics, HasSubstr("leader_election_master_status{name=\"manager-it\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("controller_runtime_reconcile_total{controller=\"configmaps\",result=\"success\"}"));
  EXPECT_THAT(metrics, HasSubstr("rest_client_requests_total"));
  const std::string file = ::testing::TempDir() + "/manager-it-metrics.txt";
  std::ofstream(file) << metrics;
  EXPECT_EQ(std::system(("promtool check metrics < " + file + " > /dev/null").c_str()), 0) << metrics;

  // kill -9: B takes over once the lease (3 s) has expired, and reconciles from its own cache.
  const auto killed = std::chrono::steady_clock::now();
  a->send(SIGKILL);
  ASSERT_TRUE(a->wait_exit(10s));
  auto leading = b->wait_line("reconciled ", 15s * time_scale());
  ASSERT_TRUE(leading) << b->output();
  EXPECT_LT(*leading - killed, (3s + 2s) * time_scale() + 1500ms) << "hand-over within lease duration + retry";

  // SIGTERM: a graceful stop exits 0 and leaves the Lease free for a successor at once.
  b->send(SIGTERM);
  auto code = b->wait_exit(30s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << b->output();
  auto lease = client_->get(kube::resources::leases, ns_, "manager-it");
  EXPECT_EQ(lease["spec"].value("holderIdentity", ""), "") << lease.dump();
}

TEST_F(ManagerIntegrationTest, BadFlagsAreAllReportedAndNothingStarts) {
  child_process p(probe_path(), {"--leader-elect-lease-duration=5x", "--no-such-flag", "--zap-log-level=loud"});
  auto code = p.wait_exit(30s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 2);
}

}  // namespace
}  // namespace datashare::runtime
