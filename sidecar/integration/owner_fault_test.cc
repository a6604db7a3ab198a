// Network faults between a sync-mode sidecar and the owner, while reads go on without pause:
// 1. the owner unreachable (a TCP proxy between them cuts every connection and refuses new ones),
// 2. the owner hanging (SIGSTOP: connections are accepted by the kernel and nothing answers).
// Every read ends within its deadline (none hangs), answers either a value the owner held for
// that key (fresh, or the stale cached one, labelled `cache-stale`) or a 502/503/504, and after
// each fault the sidecar reads the owner's new values again. A `tc netem` delay/loss is not used:
// this machine's kernel has no netem qdisc (docs/reliability.md). Fault length:
// DATASHARE_CHAOS_OWNER_FAULT_SECONDS (hack/chaos.sh: 30 s each).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "sidecar/integration/harness.h"
#include "tests/support/tcp_proxy.h"
#include "tests/support/test_owner.h"

namespace datashare::sidecar::itest {
namespace {

using namespace std::chrono_literals;
constexpr int kKeys = 20;
// A read that takes longer than this hung (the policy's deadline is 300 ms; the margin is for a
// loaded machine under ASan, a hang lasts until the harness's 30 s client timeout).
constexpr auto kHung = 10s;

TEST(SidecarOwnerFaultTest, ReadsStayBoundedAndCorrectWhileTheOwnerIsCutOffOrHangs) {
  const auto fault = std::chrono::seconds(env_size("DATASHARE_CHAOS_OWNER_FAULT_SECONDS", 5));
  const auto began = std::chrono::steady_clock::now();
  datashare::testing::test_owner owner;
  datashare::testing::tcp_proxy proxy("127.0.0.1", owner.port());

  std::mutex mu;
  std::map<std::string, std::set<std::string>> held;  // key → every name the owner ever held
  int generation = 0;
  auto seed_all = [&] {
    std::lock_guard lock(mu);
    ++generation;
    for (int i = 0; i < kKeys; ++i) {
      std::string key = "q" + std::to_string(i), name = key + "-g" + std::to_string(generation);
      held[key].insert(name);
      owner.seed(key, nlohmann::json{{"id", key}, {"name", name}, {"price", generation}}.dump());
    }
  };
  seed_all();

  const scoped_dir dir("ownerfault");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(
      dir.path(),
      "version: 1\ndataDir: " + dir.path() + "/data\nkafka: {bootstrapServers: \"" + bootstrap() +
          "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
          "}, threads: 2}\nsubscribe:\n  - policy: orders-products\n    namespace: orders\n    product: " +
          products_yaml() + "\n    topic: unused.ownerfault.topic\n    group: unused.ownerfault\n" +
          "    mode: sync\n    fields: []\n    syncFields: [name, price]\n    owner: {url: \"http://127.0.0.1:" +
          std::to_string(proxy.port()) + "\", readPath: \"/products/{key}\"}\n    maxLag: 5s\n" +
          "    store: memory\n    sync: {timeout: 300ms, retries: {attempts: 1, backoff: 20ms}, " +
          "circuitBreaker: {consecutiveFailures: 5, openFor: 1s}, cache: {ttl: 200ms, maxEntries: 1000, " +
          "serveStaleOnError: true}}\n");
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/healthz").status == 200; }, 30s)) << sidecar.log();

  // The reader: every key in turn, without pause, each read checked as it comes back.
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0}, fresh{0}, stale{0}, errors{0}, wrong{0}, hung{0};
  std::mutex report_mu;
  std::vector<std::string> reports;
  std::thread reader([&] {
    for (int i = 0; !stop.load(); ++i) {
      std::string key = "q" + std::to_string(i % kKeys);
      auto t0 = std::chrono::steady_clock::now();
      auto r = http_call(port, "GET", "/v1/data/products/" + key);
      auto took = std::chrono::steady_clock::now() - t0;
      ++reads;
      std::string problem;
      if (took > kHung || r.status == 0) {
        ++hung;
        problem = "hung or dropped (" + std::to_string(r.status) + ")";
      } else if (r.status == 200) {
        auto v = nlohmann::json::parse(r.body, nullptr, false);
        std::string name = v.is_discarded() ? "" : v.value("name", "");
        bool known;
        {
          std::lock_guard lock(mu);
          known = held[key].count(name) != 0;
        }
        const auto& sources = r.headers["datashare-sources"];
        if (!known) {
          ++wrong;
          problem = "a value the owner never held: " + r.body;
        } else if (sources.rfind("cache-stale;", 0) == 0) {
          ++stale;
        } else {
          ++fresh;
        }
      } else if (r.status == 502 || r.status == 503 || r.status == 504) {
        ++errors;
      } else {
        ++wrong;
        problem = "status " + std::to_string(r.status) + ": " + r.body;
      }
      if (!problem.empty()) {
        std::lock_guard lock(report_mu);
        if (reports.size() < 10) reports.push_back(key + ": " + problem);
      }
    }
  });

  // After a fault, the owner's new values come back through the sidecar (fresh from the owner).
  long recovery_failures = 0;
  auto recovered = [&](const std::string& context) {
    const std::string want = "-g" + std::to_string(generation);
    bool ok = wait_until(
        [&] {
          for (int i = 0; i < kKeys; ++i) {
            std::string key = "q" + std::to_string(i);
            auto r = http_call(port, "GET", "/v1/data/products/" + key);
            auto v = nlohmann::json::parse(r.body, nullptr, false);
            if (r.status != 200 || v.is_discarded() || v.value("name", "") != key + want) return false;
          }
          return true;
        },
        60s);
    if (!ok) ++recovery_failures;
    EXPECT_TRUE(ok) << context << ": the sidecar does not read the owner's new values again\n" << sidecar.log();
  };

  std::this_thread::sleep_for(2s);
  const long before_faults = reads.load();
  // 1. Unreachable: every connection cut, new ones refused.
  proxy.set_refusing(true);
  proxy.cut();
  std::this_thread::sleep_for(fault);
  seed_all();  // what the owner holds changes meanwhile
  proxy.set_refusing(false);
  recovered("after the owner was unreachable");
  // 2. Hanging: the owner stops answering, its connections stay open.
  owner.signal(SIGSTOP);
  std::this_thread::sleep_for(fault);
  owner.signal(SIGCONT);
  seed_all();
  recovered("after the owner hung");
  std::this_thread::sleep_for(1s);
  stop = true;
  reader.join();

  for (const auto& r : reports) ADD_FAILURE() << r;
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(hung.load(), 0);
  EXPECT_GT(errors.load() + stale.load(), 0) << "the faults were not seen: is the proxy in the path?";
  EXPECT_GT(reads.load() - before_faults, 100);
  chaos_line(
      "owner-faults",
      {{"reads", std::to_string(reads.load())},
       {"fresh", std::to_string(fresh.load())},
       {"stale_served", std::to_string(stale.load())},
       {"errors_5xx", std::to_string(errors.load())},
       {"faults", "2"},
       {"fault_seconds", std::to_string(fault.count())},
       {"hung", std::to_string(hung.load())},
       {"wrong", std::to_string(wrong.load())},
       {"not_recovered", std::to_string(recovery_failures)},
       {"lost", std::to_string(wrong.load() + hung.load() + recovery_failures)},
       {"seconds",
        std::to_string(
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began).count())}});
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0);
}

}  // namespace
}  // namespace datashare::sidecar::itest
