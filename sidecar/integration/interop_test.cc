// Interop with a Kafka client this project did not write: events produced with kcat are applied
// by the replica; events published by the sidecar are read by kcat with the contract's key,
// value and CloudEvents headers (and no restricted field).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

TEST(SidecarInteropTest, KcatEventsAreAppliedAndSidecarEventsReadByKcat) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.interop.products");
  create_topic(kafka, topic, 3);
  const scoped_dir tmp("interop");
  const std::string& dir = tmp.path();
  const std::uint16_t port = free_port();
  sidecar_process sidecar(dir, "version: 1\ndataDir: " + dir + "/data\nkafka: {bootstrapServers: \"" + kafka +
                                   "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
                                   "}}\npublish:\n  - product: " + products_yaml() + "\n    topic: " + topic +
                                   "\nsubscribe:\n  - policy: orders-products\n    namespace: orders\n    product: " +
                                   products_yaml() + "\n    topic: " + topic + "\n    group: " + topic +
                                   ".orders\n    mode: event\n    fields: [id, name]\n    maxLag: 5s\n");
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/readyz").status == 200; }, std::chrono::seconds(60)))
      << sidecar.log();

  // kcat → replica: an update with the contract's headers, then a deletion (empty value with -Z).
  auto produce = [&](const std::string& key, const std::string& value, std::uint64_t version, const std::string& type) {
    std::string cmd = "printf '%s' '" + key + "|" + value + "' | kcat -P -b " + kafka + " -t " + topic +
                      " -K '|' -Z -H ce_specversion=1.0 -H ce_id=kcat-" + std::to_string(version) +
                      " -H ce_source=/namespaces/catalog/dataproducts/products -H ce_type=io.datashare.products." +
                      type + " -H ce_subject=" + key +
                      " -H ce_time=2026-01-01T00:00:00Z -H datashare_version=" + std::to_string(version) + " 2>&1";
    auto r = run_command(cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  };
  produce("from-kcat", R"({"id":"from-kcat","name":"Kettle","price":20})", 10, "updated");
  produce("gone", R"({"id":"gone","name":"Gone"})", 1, "updated");
  produce("gone", "", 2, "deleted");
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/v1/data/products/from-kcat").status == 200; },
                         std::chrono::seconds(30)))
      << sidecar.log();
  auto got = http_call(port, "GET", "/v1/data/products/from-kcat");
  EXPECT_EQ(nlohmann::json::parse(got.body), nlohmann::json::parse(R"({"id":"from-kcat","name":"Kettle"})"));
  EXPECT_EQ(got.headers["datashare-version"], "10");
  EXPECT_TRUE(wait_until([&] { return http_call(port, "GET", "/v1/data/products/gone").status == 404; },
                         std::chrono::seconds(30)));

  // sidecar → kcat.
  auto put =
      http_call(port, "PUT", "/v1/data/products/sku-42", R"({"name":"Lamp","price":12.5,"supplierEmail":"s@x.io"})");
  ASSERT_EQ(put.status, 202) << put.body;
  const std::string version = put.headers["datashare-version"];
  auto del = http_call(port, "DELETE", "/v1/data/products/sku-42");
  ASSERT_EQ(del.status, 202) << del.body;
  command_result read;
  ASSERT_TRUE(wait_until(
      [&] {
        read = run_command("kcat -C -b " + kafka + " -t " + topic + " -o beginning -e -q -J 2>&1");
        return read.output.find("sku-42") != std::string::npos &&
               read.output.find("io.datashare.products.deleted") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << read.output;
  std::vector<nlohmann::json> ours;
  std::istringstream lines(read.output);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("key", "") == "sku-42") ours.push_back(j);
  }
  ASSERT_EQ(ours.size(), 2u) << read.output;
  // kcat -J prints headers as a flat [name, value, name, value, ...] array.
  auto header = [](const nlohmann::json& msg, const std::string& name) -> std::string {
    const auto& h = msg["headers"];
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
      if (h[i] == name) return h[i + 1].is_null() ? "" : h[i + 1].get<std::string>();
    }
    return "<absent>";
  };
  const auto& update = ours[0];
  EXPECT_EQ(nlohmann::json::parse(update["payload"].get<std::string>()),
            nlohmann::json::parse(R"({"id":"sku-42","name":"Lamp","price":12.5})"));
  EXPECT_EQ(update["payload"].get<std::string>().find("supplierEmail"), std::string::npos);
  EXPECT_EQ(header(update, "ce_specversion"), "1.0");
  EXPECT_EQ(header(update, "ce_type"), "io.datashare.products.updated");
  EXPECT_EQ(header(update, "ce_source"), "/namespaces/catalog/dataproducts/products");
  EXPECT_EQ(header(update, "ce_subject"), "sku-42");
  EXPECT_EQ(header(update, "content-type"), "application/json");
  EXPECT_EQ(header(update, "datashare_version"), version);
  EXPECT_EQ(header(update, "ce_id").size(), 36u);
  EXPECT_NE(header(update, "ce_time"), "<absent>");
  const auto& deletion = ours[1];
  EXPECT_TRUE(deletion["payload"].is_null()) << deletion.dump();
  EXPECT_EQ(header(deletion, "ce_type"), "io.datashare.products.deleted");
  EXPECT_GT(std::stoull(header(deletion, "datashare_version")), std::stoull(version));

  // And the replica in the same sidecar applied both of its own events.
  EXPECT_TRUE(wait_until([&] { return http_call(port, "GET", "/v1/data/products/sku-42").status == 404; },
                         std::chrono::seconds(30)));
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0) << sidecar.log();
}

// Partitions added to the topic while the replica runs (Kafka's admin API) are picked up without
// a restart: an event kcat writes into the new partition is applied.
TEST(SidecarInteropTest, APartitionAddedAtRuntimeIsRead) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.partitions.products");
  create_topic(kafka, topic, 1);
  const scoped_dir tmp("partitions");
  const std::string& dir = tmp.path();
  const std::uint16_t port = free_port();
  sidecar_process sidecar(dir, "version: 1\ndataDir: " + dir + "/data\nkafka: {bootstrapServers: \"" + kafka +
                                   "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
                                   "}}\nsubscribe:\n  - policy: orders-products\n    namespace: orders\n    product: " +
                                   products_yaml() + "\n    topic: " + topic + "\n    group: " + topic +
                                   ".orders\n    mode: event\n    fields: [id, name]\n");
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/readyz").status == 200; }, std::chrono::seconds(60)))
      << sidecar.log();
  auto produce = [&](int partition, const std::string& key) {
    std::string cmd = "printf '%s' '" + key + "|{\"id\":\"" + key + "\",\"name\":\"N\"}' | kcat -P -b " + kafka +
                      " -t " + topic + " -p " + std::to_string(partition) +
                      " -K '|' -H ce_time=2026-01-01T00:00:00Z -H datashare_version=1 2>&1";
    auto r = run_command(cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  };
  produce(0, "before");
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/v1/data/products/before").status == 200; },
                         std::chrono::seconds(30)))
      << sidecar.log();

  add_partitions(kafka, topic, 3);
  produce(2, "in-new-partition");
  // The replica looks at the topic's partitions every 5 s; allow for a slow, shared machine.
  EXPECT_TRUE(wait_until([&] { return http_call(port, "GET", "/v1/data/products/in-new-partition").status == 200; },
                         std::chrono::seconds(60)))
      << sidecar.log();
  EXPECT_NE(sidecar.log().find("partition(s) added to " + topic), std::string::npos) << sidecar.log();
  EXPECT_TRUE(sidecar.running());  // no restart
  EXPECT_EQ(http_call(port, "GET", "/v1/data/products/before").status, 200);
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0) << sidecar.log();
}

}  // namespace
}  // namespace datashare::sidecar::itest
