// Broker faults while publishing at a steady rate, on a PRIVATE broker (hack/kafka-broker.sh; the
// shared one is never stopped), shared by the tests of this binary:
// - down 20 s (stopped, then started again): every change answered 202 arrives in the topic, and
//   each key's versions arrive in the order they were accepted;
// - frozen 10 s (SIGSTOP: connections stay open and nothing answers, what a network partition
//   looks like from the sidecar), with a replica reading the topic: the same, and the replica's
//   copy ends on the last accepted change of every key.
// The chaos suite (hack/chaos.sh) runs them with 30 s faults (DATASHARE_CHAOS_OUTAGE_SECONDS,
// DATASHARE_CHAOS_FREEZE_SECONDS).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

using namespace std::chrono_literals;
constexpr int kKeys = 20;

// One broker for the whole binary (it takes a while to start on a busy machine).
private_broker& broker() {
  bootstrap();  // the cluster fixture's environment (and the Kafka installation) must be there
  static private_broker b;
  return b;
}

std::string publisher_config(const std::string& dir, std::uint16_t port, const std::string& topic) {
  return "version: 1\ndataDir: " + dir + "/data\nkafka: {bootstrapServers: \"" + broker().bootstrap() +
         "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
         "}}\npublish:\n  - product: " + products_yaml() + "\n    topic: " + topic +
         "\n    outbox: {maxEntries: 100000}\n";
}

// A steady writer: one change every 20 ms, round-robin over kKeys keys, until stopped.
class steady_writer {
 public:
  explicit steady_writer(std::uint16_t port)
      : thread_([this, port] {
          for (int i = 0; !stop_.load() && i < 100000; ++i) {
            std::string key = "o" + std::to_string(i % kKeys), name = "v" + std::to_string(i);
            auto r = http_call(port, "PUT", "/v1/data/products/" + key, R"({"name":")" + name + R"("})");
            if (r.status == 202) {
              std::lock_guard lock(mu_);
              accepted_.emplace_back(key, std::stoull(r.headers["datashare-version"]));
              last_name_[key] = name;
            } else if (r.status == 503) {
              ++rejected_;
            } else {
              ++failed_;
            }
            std::this_thread::sleep_for(20ms);
          }
        }) {}
  ~steady_writer() { finish(); }
  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return accepted_.size();
  }
  // After finish():
  const std::vector<std::pair<std::string, std::uint64_t>>& accepted() const { return accepted_; }
  const std::map<std::string, std::string>& last_name() const { return last_name_; }
  int rejected() const { return rejected_.load(); }
  int failed() const { return failed_.load(); }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, std::uint64_t>> accepted_;  // in acceptance order
  std::map<std::string, std::string> last_name_;
  std::atomic<int> rejected_{0}, failed_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct topic_check {
  std::size_t messages = 0;
  long lost = 0;            // accepted changes missing from the topic
  long keys_differing = 0;  // keys whose versions are not exactly the accepted ones, in order
};

// Reads the whole topic with kcat and compares each key's versions with the accepted ones.
topic_check check_topic(const std::string& topic, const std::vector<std::pair<std::string, std::uint64_t>>& accepted) {
  auto read = run_command("kcat -C -b " + broker().bootstrap() + " -t " + topic + " -o beginning -e -q -J 2>&1");
  std::map<std::string, std::vector<std::uint64_t>> in_topic;
  topic_check c;
  std::istringstream lines(read.output);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("headers")) continue;
    const auto& h = j["headers"];
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
      if (h[i] == "datashare_version")
        in_topic[j["key"].get<std::string>()].push_back(std::stoull(h[i + 1].get<std::string>()));
    }
    ++c.messages;
  }
  std::map<std::string, std::vector<std::uint64_t>> want;
  for (const auto& [key, version] : accepted) want[key].push_back(version);
  EXPECT_EQ(in_topic, want) << "the topic must hold every accepted change once, in acceptance order per key";
  for (const auto& [key, versions] : want) {
    const auto& got = in_topic[key];
    for (auto v : versions) c.lost += std::find(got.begin(), got.end(), v) == got.end() ? 1 : 0;
    c.keys_differing += got != versions ? 1 : 0;
  }
  return c;
}

bool outbox_drained(std::uint16_t port, nlohmann::json& status) {
  status = nlohmann::json::parse(http_call(port, "GET", "/readyz").body, nullptr, false);
  return !status.is_discarded() && status.contains("publishers") && status["publishers"][0]["outboxDepth"] == 0;
}

long seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t).count();
}

TEST(SidecarOutageTest, BrokerDownTwentySecondsWhilePublishingLosesNothing) {
  const auto outage = std::chrono::seconds(env_size("DATASHARE_CHAOS_OUTAGE_SECONDS", 20));
  const auto began = std::chrono::steady_clock::now();
  const std::string topic = unique_name("itest.outage.products");
  create_topic(broker().bootstrap(), topic, 3);
  const scoped_dir tmp("outage");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(tmp.path(), publisher_config(tmp.path(), port, topic));
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/healthz").status == 200; }, 30s)) << sidecar.log();

  steady_writer writer(port);
  std::this_thread::sleep_for(3s);
  const std::size_t before = writer.count();
  ASSERT_TRUE(broker().stop());
  auto down_at = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(outage);
  const std::size_t during = writer.count();
  ASSERT_TRUE(broker().start());
  auto downtime = std::chrono::steady_clock::now() - down_at;
  std::this_thread::sleep_for(3s);
  writer.finish();
  EXPECT_EQ(writer.failed(), 0);
  EXPECT_EQ(writer.rejected(), 0);
  ASSERT_GT(writer.accepted().size(), 500u);

  nlohmann::json status;
  ASSERT_TRUE(wait_until([&] { return outbox_drained(port, status); }, 120s)) << status.dump() << "\n" << sidecar.log();
  auto c = check_topic(topic, writer.accepted());
  chaos_line("broker-outage",
             {{"accepted", std::to_string(writer.accepted().size())},
              {"accepted_while_down", std::to_string(during - before)},
              {"outages", "1"},
              {"down_seconds", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(downtime).count())},
              {"refused", std::to_string(writer.rejected() + writer.failed())},
              {"in_topic", std::to_string(c.messages)},
              {"keys_out_of_order", std::to_string(c.keys_differing)},
              {"lost", std::to_string(c.lost)},
              {"seconds", std::to_string(seconds_since(began))}});
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0);
}

TEST(SidecarOutageTest, BrokerFrozenWhilePublishingAndReadingLosesNothing) {
  const auto freeze = std::chrono::seconds(env_size("DATASHARE_CHAOS_FREEZE_SECONDS", 10));
  const auto began = std::chrono::steady_clock::now();
  const std::string topic = unique_name("itest.freeze.products");
  create_topic(broker().bootstrap(), topic, 3);
  const scoped_dir owner_dir("freeze-owner"), replica_dir("freeze-replica");
  const std::uint16_t port = free_port(), replica_port = free_port();
  sidecar_process owner(owner_dir.path(), publisher_config(owner_dir.path(), port, topic));
  sidecar_process replica(
      replica_dir.path(),
      "version: 1\ndataDir: " + replica_dir.path() + "/data\nkafka: {bootstrapServers: \"" + broker().bootstrap() +
          "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(replica_port) +
          "}}\nsubscribe:\n  - policy: freeze\n    namespace: orders\n    product: " + products_yaml() +
          "\n    topic: " + topic + "\n    group: " + topic +
          ".freeze\n    mode: event\n    fields: [id, name]\n    maxLag: 60s\n");
  owner.start();
  replica.start();
  for (auto p : {port, replica_port}) {
    ASSERT_TRUE(wait_until([&] { return http_call(p, "GET", "/healthz").status == 200; }, 30s))
        << owner.log() << replica.log();
  }

  steady_writer writer(port);
  std::this_thread::sleep_for(3s);
  const std::size_t before = writer.count();
  ASSERT_TRUE(broker().freeze());
  const auto frozen_at = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(freeze);
  const std::size_t during = writer.count();
  ASSERT_TRUE(broker().thaw());
  const auto frozen_for = std::chrono::steady_clock::now() - frozen_at;
  std::this_thread::sleep_for(3s);
  writer.finish();
  EXPECT_EQ(writer.failed(), 0);
  EXPECT_EQ(writer.rejected(), 0);
  EXPECT_GT(during - before, 0u) << "writes must be accepted while the broker does not answer";

  nlohmann::json status;
  ASSERT_TRUE(wait_until([&] { return outbox_drained(port, status); }, 180s)) << status.dump() << "\n" << owner.log();
  auto c = check_topic(topic, writer.accepted());

  // The replica converges on the last accepted change of every key.
  long copy_wrong = 0;
  auto copy_matches = [&] {
    copy_wrong = 0;
    for (const auto& [key, name] : writer.last_name()) {
      auto r = http_call(replica_port, "GET", "/v1/data/products/" + key);
      auto v = nlohmann::json::parse(r.body, nullptr, false);
      copy_wrong += r.status == 200 && !v.is_discarded() && v.value("name", "") == name ? 0 : 1;
    }
    return copy_wrong == 0;
  };
  EXPECT_TRUE(wait_until(copy_matches, 180s)) << copy_wrong << " keys of the copy are not the last accepted change\n"
                                              << replica.log();
  chaos_line("broker-freeze",
             {{"accepted", std::to_string(writer.accepted().size())},
              {"accepted_while_frozen", std::to_string(during - before)},
              {"freezes", "1"},
              {"frozen_seconds", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(frozen_for).count())},
              {"refused", std::to_string(writer.rejected() + writer.failed())},
              {"in_topic", std::to_string(c.messages)},
              {"keys_out_of_order", std::to_string(c.keys_differing)},
              {"copy_keys_wrong", std::to_string(copy_wrong)},
              {"lost", std::to_string(c.lost + copy_wrong)},
              {"seconds", std::to_string(seconds_since(began))}});
  owner.kill(SIGTERM);
  replica.kill(SIGTERM);
  EXPECT_EQ(owner.wait(), 0);
  EXPECT_EQ(replica.wait(), 0);
}

}  // namespace
}  // namespace datashare::sidecar::itest
