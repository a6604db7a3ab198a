// Leader election between real processes (leader_election_probe) on a Lease of the real API
// server: one leader at a time, hand-over after kill -9 within the lease duration, and a
// graceful stop that releases the lease so the successor takes over at once.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"
#include "tests/support/child_process.h"
#include "tests/support/cluster_env.h"

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

std::string unique(const std::string& prefix) {
  return prefix + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(steady::now().time_since_epoch().count() % 1000000000);
}

std::string probe_path() {
  if (const char* dir = std::getenv("DATASHARE_BINARY_DIR"); dir != nullptr && *dir != '\0') {
    return std::string(dir) + "/bin/leader_election_probe";
  }
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "bin/leader_election_probe")
      .string();
}

// One leader_election_probe process.
class probe_process : public datashare::testing::child_process {
 public:
  explicit probe_process(const std::vector<std::string>& args) : child_process(probe_path(), args) {}
  std::string identity() { return line_after("identity ", 30s).value_or(""); }
};

class LeaderElectionIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    kubeconfig_ = datashare::testing::require_env("KUBECONFIG");
    client_ = new kube::client(std::make_shared<kube::cpprest_transport>(kube::load_kubeconfig({kubeconfig_})));
    ns_ = unique("leader-election");
    client_->create(kube::resources::namespaces, {{"metadata", {{"name", ns_}}}});
  }
  static void TearDownTestSuite() {
    client_->remove(kube::resources::namespaces, "", ns_);
    // client_ is kept to the end of the process: cpprestsdk frees a client's connections on its
    // own pool thread, never joined, which races with OpenSSL's clean-up at exit (TSan says so).
  }

  // Short durations keep the test quick; the retry period must stay well above the API
  // server's latency.
  std::unique_ptr<probe_process> start(const std::string& lease, const std::string& identity, int duration_s = 3,
                                       int deadline_s = 2) {
    // Stretched by DATASHARE_TEST_TIME_SCALE for the slower ThreadSanitizer build, like the bounds below.
    const int k = datashare::testing::time_scale();
    return std::make_unique<probe_process>(
        std::vector<std::string>{"--kubeconfig=" + kubeconfig_, "--namespace=" + ns_, "--name=" + lease,
                                 "--identity=" + identity, "--lease-duration=" + std::to_string(duration_s * k) + "s",
                                 "--renew-deadline=" + std::to_string(deadline_s * k) + "s",
                                 "--retry-period=" + std::to_string(500 * k) + "ms"});
  }

  kube::json lease_spec(const std::string& lease) { return client_->get(kube::resources::leases, ns_, lease)["spec"]; }

  static std::string kubeconfig_;
  static kube::client* client_;
  static std::string ns_;
};
std::string LeaderElectionIntegrationTest::kubeconfig_;
kube::client* LeaderElectionIntegrationTest::client_ = nullptr;
std::string LeaderElectionIntegrationTest::ns_;

double seconds(steady::duration d) {
  return std::chrono::duration<double>(d).count();
}

TEST_F(LeaderElectionIntegrationTest, OfTwoCandidatesExactlyOneLeads) {
  const std::string lease = unique("one-leader");
  auto a = start(lease, "a");
  auto b = start(lease, "b");

  const auto deadline = steady::now() + 30s;
  while (!a->has_line("leading") && !b->has_line("leading") && steady::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(a->has_line("leading") || b->has_line("leading")) << a->output() << b->output();
  probe_process& leader = a->has_line("leading") ? *a : *b;
  probe_process& follower = a->has_line("leading") ? *b : *a;
  const std::string leader_id = &leader == a.get() ? "a" : "b";

  // For two lease durations the follower sees the leader and never leads itself.
  EXPECT_TRUE(follower.wait_line("new-leader " + leader_id, 10s)) << follower.output();
  std::this_thread::sleep_for(6s * datashare::testing::time_scale());
  EXPECT_FALSE(follower.has_line("leading")) << follower.output();
  EXPECT_FALSE(leader.has_line("stopped")) << leader.output();
  const kube::json spec = lease_spec(lease);
  EXPECT_EQ(spec["holderIdentity"], leader_id);
  EXPECT_EQ(spec["leaseDurationSeconds"], 3 * datashare::testing::time_scale());
  EXPECT_EQ(spec["leaseTransitions"], 0);

  a->send(SIGTERM);
  b->send(SIGTERM);
  EXPECT_EQ(a->wait_exit(20s), 0);
  EXPECT_EQ(b->wait_exit(20s), 0);
}

TEST_F(LeaderElectionIntegrationTest, KillingTheLeaderHandsTheLeaseOverWithinTheLeaseDuration) {
  const std::string lease = unique("kill-leader");
  auto a = start(lease, "a");
  ASSERT_TRUE(a->wait_line("leading", 30s)) << a->output();
  auto b = start(lease, "b");
  ASSERT_TRUE(b->wait_line("new-leader a", 30s)) << b->output();
  std::this_thread::sleep_for(1s);  // a few renewals seen by b

  const auto killed = steady::now();
  a->send(SIGKILL);
  EXPECT_EQ(a->wait_exit(10s), 128 + SIGKILL);
  const auto led = b->wait_line("leading", 30s);
  ASSERT_TRUE(led) << b->output();
  const double took = seconds(*led - killed);

  // b counts the lease duration (3 s) from when it last saw the lease change, which is at most
  // one campaign period (retry 0.5 s × up to 2.2 with client-go's jitter) after a's last
  // renewal, and takes over on its first attempt after that: at most 3 + 1.1 + 1.1 s, plus
  // a little for two processes under sanitizers. And never before the lease could expire: a's
  // last renewal was at most one retry period before the kill.
  const double k = datashare::testing::time_scale();
  EXPECT_LE(took, (3.0 + 2 * 1.1) * k + 1.0) << b->output();
  EXPECT_GE(took, (3.0 - 0.5) * k - 0.3) << b->output();
  std::cout << "hand-over after kill -9: " << took << " s (lease duration 3 s)\n";

  const kube::json spec = lease_spec(lease);
  EXPECT_EQ(spec["holderIdentity"], "b");
  EXPECT_EQ(spec["leaseTransitions"], 1);
  b->send(SIGTERM);
  EXPECT_EQ(b->wait_exit(20s), 0);
}

TEST_F(LeaderElectionIntegrationTest, SigtermReleasesTheLeaseAndTheOtherTakesOverAtOnce) {
  const std::string lease = unique("release");
  // A long lease: a successor that had to wait for it to expire would take 10 s or more.
  auto a = start(lease, "a", 10, 7);
  ASSERT_TRUE(a->wait_line("leading", 30s)) << a->output();
  auto b = start(lease, "b", 10, 7);
  ASSERT_TRUE(b->wait_line("new-leader a", 30s)) << b->output();

  // Watch the lease to see the release itself, however briefly it lasts. The watch ends by
  // declining an event (b renews every retry period, so events keep coming) rather than by
  // cancelling the request, which ThreadSanitizer reports inside cpprestsdk.
  const std::string rv = client_->get(kube::resources::leases, ns_, lease)["metadata"]["resourceVersion"];
  std::mutex mu;
  std::condition_variable seen_release;
  bool released = false;
  std::atomic<bool> done{false};
  std::jthread watch([&] {
    try {
      client_->watch(
          kube::resources::leases, ns_,
          {.resource_version = rv, .field_selector = "metadata.name=" + lease, .timeout_seconds = 60},
          [&](kube::watch_event&& e) {
            const kube::json spec = e.object.value("spec", kube::json::object());
            if (spec.value("holderIdentity", "") == "" && spec.value("leaseDurationSeconds", 0) == 1) {
              std::lock_guard lock(mu);
              released = true;
              seen_release.notify_all();
            }
            return !done.load();
          },
          std::stop_token());
    } catch (const std::exception& e) {
      ADD_FAILURE() << "watch: " << e.what();
    }
  });
  // Declared after the watch, so destroyed first should an assertion return early: the watch
  // then ends on b's next renewal and the jthread's join does not hang.
  struct end_watch {
    std::atomic<bool>& done;
    ~end_watch() { done = true; }
  } end_watch_on_return{done};

  const auto terminated = steady::now();
  a->send(SIGTERM);
  EXPECT_TRUE(a->wait_line("stopped", 10s)) << a->output();
  EXPECT_EQ(a->wait_exit(20s), 0);
  const auto led = b->wait_line("leading", 30s);
  ASSERT_TRUE(led) << b->output();
  const double took = seconds(*led - terminated);
  // The release is a change b sees on its next attempt (every 0.5–1.1 s).
  EXPECT_LT(took, 4.0 * datashare::testing::time_scale()) << b->output();
  std::cout << "hand-over after SIGTERM: " << took << " s (lease duration 10 s)\n";

  const kube::json spec = lease_spec(lease);
  EXPECT_EQ(spec["holderIdentity"], "b");
  EXPECT_EQ(spec["leaseTransitions"], 1);

  {
    std::unique_lock lock(mu);
    EXPECT_TRUE(seen_release.wait_for(lock, 10s, [&] { return released; })) << "no released lease record in the watch";
  }
  done = true;
  watch.join();
  b->send(SIGTERM);
  EXPECT_EQ(b->wait_exit(20s), 0);
}

TEST_F(LeaderElectionIntegrationTest, SigtermOfTheOnlyCandidateLeavesTheLeaseFree) {
  const std::string lease = unique("free");
  auto a = start(lease, "a");
  ASSERT_TRUE(a->wait_line("leading", 30s)) << a->output();
  a->send(SIGTERM);
  EXPECT_EQ(a->wait_exit(20s), 0);
  EXPECT_TRUE(a->has_line("stopped")) << a->output();
  EXPECT_TRUE(a->has_line("exit")) << a->output();
  const kube::json spec = lease_spec(lease);
  EXPECT_EQ(spec.value("holderIdentity", ""), "");
  EXPECT_EQ(spec["leaseDurationSeconds"], 1);
}

}  // namespace
}  // namespace datashare::runtime
