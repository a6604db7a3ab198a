// A new replica started after 50,000 updates to 5,000 keys on a compacted topic ends with exactly
// the 5,000 latest states (with `store: memory`, which always bootstraps from the beginning).
// And the default read index (`readIndex: auto`) of two RocksDB copies bootstrapping one topic:
// kept within its budget, dropped past it, every record served either way.
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

TEST(SidecarBootstrapTest, TheDefaultReadIndexIsKeptWithinItsBudgetAndDroppedPastIt) {
  constexpr int kRecords = 30'000;  // ~300 B each in an index: ~9 MB, over a 16Mi sidecar's 4 MiB
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.bootstrap.index");
  create_topic(kafka, topic, 2, {{"cleanup.policy", "compact"}});
  const std::string pad(200, 'n');
  {
    test_producer producer(kafka);
    ASSERT_EQ(producer.error(), "");
    for (int i = 0; i < kRecords; ++i) {
      std::string key = "p" + std::to_string(i);
      std::string value = nlohmann::json{{"id", key}, {"name", pad + std::to_string(i)}, {"price", i}}.dump();
      ASSERT_FALSE(producer.produce(topic, key, value, {{"datashare_version", "1"}}));
    }
    ASSERT_FALSE(producer.flush(std::chrono::seconds(60)));
    ASSERT_EQ(producer.failed_deliveries(), 0);
  }
  // Two sidecars, each with its RocksDB copy and no readIndex in its config: "roomy" has the
  // machine's memory (a quarter of it is its budget), "small" says its limit is 16Mi (4 MiB).
  struct copy {
    copy(const std::string& kafka, const std::string& topic, const std::string& name, const std::string& extra)
        : dir("index-" + name),
          port(free_port()),
          process(dir.path(), "version: 1\ndataDir: " + dir.path() + "/data\n" + extra +
                                  "kafka: {bootstrapServers: \"" + kafka +
                                  "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
                                  "}}\nsubscribe:\n  - policy: " + name + "\n    namespace: orders\n    product: " +
                                  products_yaml() + "\n    topic: " + topic + "\n    group: " + topic + "." + name +
                                  "\n    mode: event\n    fields: [id, name, price]\n    maxLag: 60s\n") {
      process.start();
    }
    double index_bytes() const {
      return metric(port, "datashare_replica_read_index_bytes{policy=\"" + name() + "\",product=\"products\"}");
    }
    std::string name() const { return dir.path().find("roomy") != std::string::npos ? "roomy" : "small"; }
    scoped_dir dir;
    std::uint16_t port;
    sidecar_process process;
  };
  copy roomy(kafka, topic, "roomy", "");
  copy small(kafka, topic, "small", "memoryLimit: 16Mi\n");
  for (copy* c : {&roomy, &small}) {
    ASSERT_TRUE(
        wait_until([&] { return http_call(c->port, "GET", "/readyz").status == 200; }, std::chrono::seconds(120)))
        << c->name() << ": " << http_call(c->port, "GET", "/readyz").body << c->process.log();
  }
  // The gauge is refreshed once a second.
  EXPECT_TRUE(wait_until([&] { return roomy.index_bytes() > kRecords * 200.0; }, std::chrono::seconds(5)))
      << roomy.index_bytes();
  EXPECT_TRUE(wait_until([&] { return small.index_bytes() == 0; }, std::chrono::seconds(5))) << small.index_bytes();
  EXPECT_NE(small.process.log().find("read index dropped"), std::string::npos) << small.process.log();
  // The stores are sized by the limit too (store::store_memory_for): the smallest write buffers
  // and block cache; the roomy sidecar keeps the defaults.
  EXPECT_NE(small.process.log().find("replica_memtable_bytes=2097152 logged_memtable_bytes=2097152 "
                                     "block_cache_bytes=4194304 read_index_budget_bytes=4194304"),
            std::string::npos)
      << small.process.log();
  EXPECT_NE(roomy.process.log().find("replica_memtable_bytes=33554432 logged_memtable_bytes=16777216 "
                                     "block_cache_bytes=33554432"),
            std::string::npos)
      << roomy.process.log();
  EXPECT_EQ(roomy.process.log().find("read index dropped"), std::string::npos) << roomy.process.log();
  for (copy* c : {&roomy, &small}) {
    for (int i = 0; i < kRecords; i += 97) {
      const std::string key = "p" + std::to_string(i);
      auto r = http_call(c->port, "GET", "/v1/data/products/" + key);
      ASSERT_EQ(r.status, 200) << c->name() << " " << key << ": " << r.body;
      auto j = nlohmann::json::parse(r.body);
      ASSERT_EQ(j["name"], pad + std::to_string(i)) << c->name() << " " << key;
    }
    auto missing = http_call(c->port, "GET", "/v1/data/products/p" + std::to_string(kRecords));
    EXPECT_EQ(missing.status, 404) << c->name();
  }
  // Restarted, the small copy loads its index from RocksDB until the budget stops it, and serves on.
  small.process.kill(SIGTERM);
  ASSERT_EQ(small.process.wait(), 0) << small.process.log();
  small.process.start();
  ASSERT_TRUE(
      wait_until([&] { return http_call(small.port, "GET", "/readyz").status == 200; }, std::chrono::seconds(60)))
      << small.process.log();
  auto r = http_call(small.port, "GET", "/v1/data/products/p29999");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(wait_until([&] { return small.index_bytes() == 0; }, std::chrono::seconds(5))) << small.index_bytes();
  for (copy* c : {&roomy, &small}) {
    c->process.kill(SIGTERM);
    EXPECT_EQ(c->process.wait(), 0) << c->name();
  }
}

}  // namespace
}  // namespace datashare::sidecar::itest
