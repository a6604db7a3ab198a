// A new replica started after 50,000 updates to 5,000 keys on a compacted topic ends with exactly
// the 5,000 latest states (with `store: memory`, which always bootstraps from the beginning).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

constexpr int kUpdates = 50'000;
constexpr int kKeys = 5'000;

TEST(SidecarBootstrapTest, NewReplicaGetsExactlyTheLatestStateOfEveryKey) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.bootstrap.products");
  // Compaction made eager, so part of the log is really compacted when the replica reads it.
  create_topic(kafka, topic, 3,
               {{"cleanup.policy", "compact"},
                {"segment.ms", "500"},
                {"min.cleanable.dirty.ratio", "0.01"},
                {"delete.retention.ms", "1000"},
                {"segment.bytes", "1048576"}});
  {
    test_producer producer(kafka);
    ASSERT_EQ(producer.error(), "");
    for (int i = 0; i < kUpdates; ++i) {
      std::string key = "p" + std::to_string(i % kKeys);
      std::string version = std::to_string(i / kKeys + 1);
      std::string value = nlohmann::json{{"id", key}, {"name", "name-" + version}, {"price", i}}.dump();
      auto ec = producer.produce(topic, key, value, {{"datashare_version", version}});
      ASSERT_FALSE(ec) << ec.message();
    }
    ASSERT_FALSE(producer.flush(std::chrono::seconds(60)));
    ASSERT_EQ(producer.failed_deliveries(), 0);
  }

  const scoped_dir tmp("bootstrap");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(
      tmp.path(), "version: 1\nkafka: {bootstrapServers: \"" + kafka +
                      "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
                      "}}\nsubscribe:\n  - policy: bootstrap\n    namespace: orders\n    product: " + products_yaml() +
                      "\n    topic: " + topic + "\n    group: " + topic +
                      ".new\n    mode: event\n    fields: [id, name, price]\n    store: memory\n"
                      "    maxLag: 60s\n");
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/readyz").status == 200; }, std::chrono::seconds(120)))
      << http_call(port, "GET", "/readyz").body << sidecar.log();

  std::map<std::string, nlohmann::json> copy;
  std::string after;
  for (int page = 0; page < 100; ++page) {
    auto r = http_call(port, "GET", "/v1/data/products?limit=1000" + (after.empty() ? "" : "&after=" + after));
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = nlohmann::json::parse(r.body);
    for (const auto& it : j["items"]) copy[it["key"].get<std::string>()] = it;
    if (!j.contains("next")) break;
    after = j["next"].get<std::string>();
  }
  ASSERT_EQ(copy.size(), static_cast<std::size_t>(kKeys));
  constexpr int kRounds = kUpdates / kKeys;
  for (int k = 0; k < kKeys; ++k) {
    std::string key = "p" + std::to_string(k);
    const auto& it = copy[key];
    ASSERT_EQ(it["version"], kRounds) << key;
    ASSERT_EQ(it["value"]["name"], "name-" + std::to_string(kRounds)) << key;
    ASSERT_EQ(it["value"]["price"], (kRounds - 1) * kKeys + k) << key;
  }
  auto status = nlohmann::json::parse(http_call(port, "GET", "/readyz").body);
  std::cout << "applied " << status["replicas"][0]["appliedTotal"] << " of " << kUpdates
            << " events (the rest compacted away or stale)\n";
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0);
}

}  // namespace
}  // namespace datashare::sidecar::itest
