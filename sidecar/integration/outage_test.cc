// Broker down 20 s while publishing at a steady rate, on a PRIVATE broker (hack/kafka-broker.sh;
// the shared one is never stopped): every change answered 202 arrives in the topic, and each
// key's versions arrive in the order they were accepted.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

constexpr auto kOutage = std::chrono::seconds(20);
constexpr int kKeys = 20;

// A broker of this test's own, removed at the end whatever happens.
class private_broker {
 public:
  private_broker() : dir_("broker") {
    const char* src = std::getenv("DATASHARE_SOURCE_DIR");
    script_ = std::string(src != nullptr ? src : ".") + "/hack/kafka-broker.sh";
    auto r = run_command(script_ + " up " + dir_.path() + "/kafka 2>&1");
    auto pos = r.output.find("DATASHARE_KAFKA_BOOTSTRAP=");
    if (r.exit_code != 0 || pos == std::string::npos)
      throw std::runtime_error("private broker did not start:\n" + r.output);
    bootstrap_ = r.output.substr(pos + 26);
    bootstrap_ = bootstrap_.substr(0, bootstrap_.find_first_of("\r\n"));
    // The broker runs detached (setsid): if this test is killed (a ctest timeout, an interrupted
    // run), no destructor stops it. A watchdog does, once this process is gone.
    run_command("nohup bash -c 'while kill -0 " + std::to_string(::getpid()) + " 2>/dev/null; do sleep 2; done; " +
                script_ + " down " + dir_.path() + "/kafka; rm -rf " + dir_.path() + "' >/dev/null 2>&1 &");
  }
  ~private_broker() { run_command(script_ + " down " + dir_.path() + "/kafka >/dev/null 2>&1"); }
  const std::string& bootstrap() const { return bootstrap_; }
  bool stop() { return run_command(script_ + " stop " + dir_.path() + "/kafka 2>&1").exit_code == 0; }
  bool start() { return run_command(script_ + " start " + dir_.path() + "/kafka 2>&1").exit_code == 0; }

 private:
  scoped_dir dir_;
  std::string script_, bootstrap_;
};

TEST(SidecarOutageTest, BrokerDownTwentySecondsWhilePublishingLosesNothing) {
  bootstrap();  // the cluster fixture's environment (and the Kafka installation) must be there
  private_broker broker;
  const std::string topic = unique_name("itest.outage.products");
  create_topic(broker.bootstrap(), topic, 3);
  const scoped_dir tmp("outage");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(tmp.path(), "version: 1\ndataDir: " + tmp.path() + "/data\nkafka: {bootstrapServers: \"" +
                                          broker.bootstrap() + "\"}\nlisten: {data: {address: 127.0.0.1, port: " +
                                          std::to_string(port) + "}}\npublish:\n  - product: " + products_yaml() +
                                          "\n    topic: " + topic + "\n    outbox: {maxEntries: 100000}\n");
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/healthz").status == 200; }, std::chrono::seconds(30)))
      << sidecar.log();

  // A steady writer: one change every 20 ms, round-robin over kKeys keys.
  std::atomic<bool> stop_writing{false};
  std::vector<std::pair<std::string, std::uint64_t>> accepted;  // in acceptance order
  int rejected = 0, failed = 0;
  std::thread writer([&] {
    for (int i = 0; !stop_writing.load() && i < 100000; ++i) {
      std::string key = "o" + std::to_string(i % kKeys);
      auto r = http_call(port, "PUT", "/v1/data/products/" + key, R"({"name":"v)" + std::to_string(i) + R"("})");
      if (r.status == 202) {
        accepted.emplace_back(key, std::stoull(r.headers["datashare-version"]));
      } else if (r.status == 503) {
        ++rejected;
      } else {
        ++failed;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_TRUE(broker.stop());
  auto down_at = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(kOutage);
  auto during = accepted.size();
  ASSERT_TRUE(broker.start());
  auto downtime = std::chrono::steady_clock::now() - down_at;
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop_writing = true;
  writer.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(rejected, 0);
  ASSERT_GT(accepted.size(), 500u);

  nlohmann::json status;
  ASSERT_TRUE(wait_until(
      [&] {
        status = nlohmann::json::parse(http_call(port, "GET", "/readyz").body, nullptr, false);
        return !status.is_discarded() && status["publishers"][0]["outboxDepth"] == 0;
      },
      std::chrono::seconds(120)))
      << status.dump() << "\n"
      << sidecar.log();

  auto read = run_command("kcat -C -b " + broker.bootstrap() + " -t " + topic + " -o beginning -e -q -J 2>&1");
  std::map<std::string, std::vector<std::uint64_t>> in_topic;
  std::size_t messages = 0;
  std::istringstream lines(read.output);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("headers")) continue;
    const auto& h = j["headers"];
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
      if (h[i] == "datashare_version")
        in_topic[j["key"].get<std::string>()].push_back(std::stoull(h[i + 1].get<std::string>()));
    }
    ++messages;
  }
  std::map<std::string, std::vector<std::uint64_t>> want;
  for (const auto& [key, version] : accepted) want[key].push_back(version);
  EXPECT_EQ(in_topic, want) << "the topic must hold every accepted change once, in acceptance order per key";
  std::cout << "accepted " << accepted.size() << " changes (" << (accepted.size() - during)
            << " after the outage began... "
            << "broker down " << std::chrono::duration_cast<std::chrono::seconds>(downtime).count() << " s), "
            << messages << " messages in the topic\n";
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0);
}

}  // namespace
}  // namespace datashare::sidecar::itest
