#include "gateway/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace datashare::gateway {
namespace {

using sidecar::config::problem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;

auto has_problem(const std::string& path, const std::string& message_part) {
  return Contains(AllOf(Field(&problem::path, path), Field(&problem::message, HasSubstr(message_part))));
}

TEST(GatewayConfigTest, ParsesTheOperatorsFile) {
  auto r = parse_config(R"(
version: 1
product: {name: products, namespace: catalog, key: id, fields: [{name: id, type: string}, {name: name, type: string}]}
dataDir: /var/lib/datashare-gateway
listen: {data: {address: 0.0.0.0, port: 8080}, admin: {address: 0.0.0.0, port: 9090}}
transaction: {timeout: 5s}
participants:
  - {name: owner, role: owner, url: "http://product-service.catalog:8091"}
  - {name: orders/order-service-products, role: copy, url: "http://order-service.orders:8091"}
)");
  ASSERT_TRUE(r.problems.empty()) << sidecar::config::format_problems(r.problems);
  const auto& c = *r.config;
  EXPECT_EQ(c.product.name, "products");
  EXPECT_EQ(c.product.key, "id");
  EXPECT_EQ(c.data_dir, "/var/lib/datashare-gateway");
  EXPECT_EQ(c.data.port, 8080);
  EXPECT_EQ(c.admin.port, 9090);
  EXPECT_EQ(c.timeout, std::chrono::seconds(5));
  ASSERT_EQ(c.participants.size(), 2u);
  EXPECT_EQ(c.participants[0].role, sidecar::config::participant_role::owner);
  EXPECT_EQ(c.participants[1].name, "orders/order-service-products");
  EXPECT_EQ(c.participants[1].url, "http://order-service.orders:8091");
}

TEST(GatewayConfigTest, DefaultsAreTheOperatorsPorts) {
  auto r = parse_config(R"(
version: 1
product: {name: p, namespace: n, key: id, fields: [{name: id, type: string}]}
dataDir: /d
participants: [{name: owner, role: owner, url: "http://o:8091"}]
)");
  ASSERT_TRUE(r.problems.empty()) << sidecar::config::format_problems(r.problems);
  EXPECT_EQ(r.config->data.port, 8080);
  EXPECT_EQ(r.config->admin.port, 9090);
  EXPECT_EQ(r.config->timeout, std::chrono::seconds(5));
  EXPECT_EQ(r.config->threads, 1);
}

TEST(GatewayConfigTest, EveryProblemWithItsPath) {
  auto r = parse_config(R"(
version: 2
product: {name: p, namespace: n, key: idd, fields: [{name: id, type: strin}]}
listen: {data: {address: 0.0.0.0, port: 8080}, admin: {address: 0.0.0.0, port: 8080}, extra: 1}
transaction: {timeout: soon}
participants:
  - {name: a, role: copy, url: "https://x:1"}
  - {name: a, role: boss, url: "http://x:1/path"}
  - {name: c, role: copy, url: "http://y:2", color: red}
)");
  EXPECT_FALSE(r.config);
  EXPECT_THAT(r.problems, has_problem("version", "unsupported schema version 2"));
  EXPECT_THAT(r.problems, has_problem("product.key", "key field \"idd\" is not one of the fields"));
  EXPECT_THAT(r.problems, has_problem("product.fields[0].type", "unknown type \"strin\""));
  EXPECT_THAT(r.problems, has_problem("dataDir", "is required"));
  EXPECT_THAT(r.problems, has_problem("listen.extra", "unknown key"));
  EXPECT_THAT(r.problems, has_problem("listen.admin.port", "must differ"));
  EXPECT_THAT(r.problems, has_problem("transaction.timeout", "not a duration"));
  EXPECT_THAT(r.problems, has_problem("participants[0].url", "must be http://host[:port]"));
  EXPECT_THAT(r.problems, has_problem("participants[1].name", "appears twice"));
  EXPECT_THAT(r.problems, has_problem("participants[1].role", "must be owner or copy"));
  EXPECT_THAT(r.problems, has_problem("participants[2].color", "unknown key"));
  EXPECT_THAT(r.problems, has_problem("participants", "exactly one participant must have role owner, found 0"));
}

// The contract with the operator: the gateway.yaml it renders (controllers' golden file) is valid.
TEST(GatewayConfigTest, TheOperatorsRenderedConfigIsValid) {
  const char* src = std::getenv("DATASHARE_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "run through ctest";
  std::ifstream in(std::string(src) + "/controllers/desired/testdata/gateway-objects.json");
  ASSERT_TRUE(in) << "controllers/desired/testdata/gateway-objects.json";
  auto objects = nlohmann::json::parse(in);
  int found = 0;
  for (const auto& o : objects) {
    if (o.value("kind", "") != "ConfigMap" || !o.contains("data") || !o["data"].contains("gateway.yaml")) continue;
    ++found;
    auto r = parse_config(o["data"]["gateway.yaml"].get<std::string>());
    EXPECT_TRUE(r.problems.empty()) << sidecar::config::format_problems(r.problems);
    ASSERT_TRUE(r.config);
    EXPECT_EQ(r.config->participants.size(), 2u);
  }
  EXPECT_EQ(found, 1);
}

TEST(GatewayConfigTest, MalformedFiles) {
  EXPECT_THAT(parse_config("version: 1\nproduct: [").problems, has_problem("", "not valid YAML"));
  EXPECT_THAT(parse_config("[1]").problems, has_problem("", "must be a YAML mapping"));
  EXPECT_THAT(parse_config("version: 1").problems, has_problem("participants", "is required"));
  EXPECT_THAT(load_config_file("/nonexistent.yaml").problems, has_problem("", "cannot read config file"));
}

}  // namespace
}  // namespace datashare::gateway
