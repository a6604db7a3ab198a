#include "controllers/api/spec.h"

#include <gtest/gtest.h>

namespace datashare::controllers {
namespace {

json product_json() {
  return json::parse(R"({
    "apiVersion": "datashare.io/v1alpha1", "kind": "DataProduct",
    "metadata": {"name": "products", "namespace": "catalog", "uid": "u1", "generation": 3,
                 "creationTimestamp": "2026-11-22T10:00:00Z"},
    "spec": {
      "owner": {"workload": {"kind": "Deployment", "name": "product-service"},
                "endpoint": {"service": "product-service", "port": 8080,
                             "readPath": "/products/{key}", "writePath": "/products/{key}"}},
      "key": "id",
      "fields": [{"name": "id", "type": "string"}, {"name": "name", "type": "string"},
                 {"name": "price", "type": "number"},
                 {"name": "supplierEmail", "type": "string", "restricted": true}],
      "topic": {"name": "catalog.products.v1", "partitions": 6, "config": {"min.insync.replicas": "1"},
                "deletionPolicy": "Delete"},
      "access": {"namespaces": ["orders"]}}})");
}

json policy_json() {
  return json::parse(R"({
    "metadata": {"name": "order-service-products", "namespace": "orders", "uid": "u2", "generation": 1},
    "spec": {"product": {"name": "products", "namespace": "catalog"},
             "consumer": {"workload": {"name": "order-service"}},
             "mode": "hybrid", "fields": ["id", "name"], "syncFields": ["price"],
             "consistency": {"maxLag": "1m30s"},
             "sync": {"timeout": "250ms", "maxInFlight": 16, "retries": {"attempts": 3, "backoff": "10ms"}}}})");
}

TEST(DataProductSpec, ParsesEveryField) {
  auto r = parse_data_product(product_json());
  ASSERT_TRUE(r.value) << describe(r.problems);
  const auto& p = *r.value;
  EXPECT_EQ(p.meta.key(), "catalog/products");
  EXPECT_EQ(p.meta.generation, 3);
  EXPECT_EQ(p.owner.name, "product-service");
  EXPECT_EQ(p.owner_url(), "http://product-service.catalog.svc:8080");
  EXPECT_EQ(p.fields.size(), 4u);
  EXPECT_TRUE(p.find_field("supplierEmail")->restricted);
  EXPECT_EQ(p.topic.partitions, 6);
  EXPECT_EQ(p.topic.replication_factor, -1);
  EXPECT_EQ(p.topic.deletion_policy, "Delete");
  EXPECT_TRUE(p.allows("catalog"));
  EXPECT_TRUE(p.allows("orders"));
  EXPECT_FALSE(p.allows("billing"));
}

TEST(DataProductSpec, WildcardAccessAllowsEveryNamespace) {
  json j = product_json();
  j["spec"]["access"]["namespaces"] = {"*"};
  EXPECT_TRUE(parse_data_product(j).value->allows("anything"));
}

TEST(DataProductSpec, EveryProblemHasItsPath) {
  json j = product_json();
  j["spec"]["key"] = "sku";
  j["spec"]["fields"][1]["type"] = "strng";
  j["spec"]["fields"][2]["name"] = "id";
  j["spec"]["topic"]["partitions"] = 0;
  j["spec"]["topic"]["config"]["retention.ms"] = 5;
  j["spec"]["owner"]["endpoint"]["readPath"] = "/products";
  j["spec"]["owner"]["workload"]["kind"] = "CronJob";
  auto r = parse_data_product(j);
  EXPECT_FALSE(r.value);
  std::string all = describe(r.problems);
  EXPECT_NE(all.find("spec.fields[1].type: unknown type \"strng\""), std::string::npos) << all;
  EXPECT_NE(all.find("spec.fields[2].name: duplicate field \"id\""), std::string::npos) << all;
  EXPECT_NE(all.find("spec.key: \"sku\" is not one of spec.fields"), std::string::npos) << all;
  EXPECT_NE(all.find("spec.topic.partitions: must be between 1 and 10000, got 0"), std::string::npos) << all;
  EXPECT_NE(all.find("spec.topic.config.retention.ms: expected string"), std::string::npos) << all;
  EXPECT_NE(all.find("spec.owner.endpoint.readPath: must contain {key}"), std::string::npos) << all;
  EXPECT_NE(all.find("spec.owner.workload.kind: unsupported kind \"CronJob\""), std::string::npos) << all;
}

TEST(DataProductSpec, WrongTypesAndMissingSpecNeverThrow) {
  EXPECT_FALSE(parse_data_product(json::object()).value);
  EXPECT_FALSE(parse_data_product(json::array()).value);
  json j = product_json();
  j["spec"]["fields"] = "id,name";
  j["spec"]["topic"] = nullptr;
  auto r = parse_data_product(j);
  EXPECT_FALSE(r.value);
  EXPECT_NE(describe(r.problems).find("spec.fields: expected array, got string"), std::string::npos);
  EXPECT_NE(describe(r.problems).find("spec.topic: required value is missing"), std::string::npos);
}

// Found by fuzz/fuzz_crd_spec: a resource that is not a JSON object (`9`) came back with neither
// a value nor a problem, so its condition would have had an empty message.
TEST(DataProductSpec, NonObjectResourceHasAProblem) {
  for (const json& j : {json(9), json::array(), json("x"), json()}) {
    auto product = parse_data_product(j);
    EXPECT_FALSE(product.value);
    ASSERT_FALSE(product.problems.empty()) << j.dump();
    EXPECT_EQ(product.problems[0].path, "spec");
    auto policy = parse_data_sharing_policy(j);
    EXPECT_FALSE(policy.value);
    EXPECT_FALSE(policy.problems.empty()) << j.dump();
  }
}

TEST(DataSharingPolicySpec, ParsesAndDefaults) {
  auto r = parse_data_sharing_policy(policy_json());
  ASSERT_TRUE(r.value) << describe(r.problems);
  const auto& p = *r.value;
  EXPECT_EQ(p.product_key(), "catalog/products");
  EXPECT_EQ(p.consumer.kind, "Deployment");
  EXPECT_EQ(p.max_lag_duration, std::chrono::seconds(90));
  EXPECT_EQ(p.sync.timeout, "250ms");
  EXPECT_EQ(p.sync.retry_attempts, 3);
  EXPECT_EQ(p.sync.max_in_flight, 16);
  EXPECT_EQ(p.sync.breaker_open_for, "10s");
  EXPECT_EQ(p.consumer_group(), "datashare.orders.order-service-products");
  EXPECT_TRUE(p.keeps_copy());
  EXPECT_FALSE(p.needs_gateway());
}

TEST(DataSharingPolicySpec, ProductNamespaceDefaultsToThePolicys) {
  json j = policy_json();
  j["spec"]["product"].erase("namespace");
  EXPECT_EQ(parse_data_sharing_policy(j).value->product_key(), "orders/products");
}

TEST(DataSharingPolicySpec, CrossFieldRules) {
  json j = policy_json();
  j["spec"]["mode"] = "event";
  auto r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.syncFields: event mode reads nothing through the owner"),
            std::string::npos);
  j = policy_json();
  j["spec"]["syncFields"] = {"name"};
  r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.syncFields[0]: \"name\" is also in spec.fields"), std::string::npos);
  j = policy_json();
  j["spec"]["mode"] = "mirror";
  r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.mode: unknown mode \"mirror\""), std::string::npos);
  j = policy_json();
  j["spec"]["consistency"]["maxLag"] = "5 seconds";
  j["spec"]["fields"] = {"id", "id"};
  r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.consistency.maxLag: not a duration: \"5 seconds\""), std::string::npos);
  EXPECT_NE(describe(r.problems).find("spec.fields[1]: duplicate value \"id\""), std::string::npos);
  // A duration too long to mean anything (and beyond int64 milliseconds) is refused by name.
  j = policy_json();
  j["spec"]["consistency"]["maxLag"] = std::string(57, '6') + "s";
  r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.consistency.maxLag: not a duration"), std::string::npos);
  j = policy_json();
  j["spec"]["sync"]["maxInFlight"] = 0;
  r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.sync.maxInFlight: must be between 1 and 100000, got 0"), std::string::npos);
}

TEST(DataSharingPolicySpec, ReadIndexIsAutoByDefaultAndMemoryOnlyForRocksdbCopies) {
  json j = policy_json();
  auto r = parse_data_sharing_policy(j);
  ASSERT_TRUE(r.value) << describe(r.problems);
  EXPECT_EQ(r.value->read_index, "auto");
  j["spec"]["replica"] = {{"readIndex", "none"}};
  r = parse_data_sharing_policy(j);
  ASSERT_TRUE(r.value) << describe(r.problems);
  EXPECT_EQ(r.value->read_index, "none");
  j["spec"]["replica"] = {{"readIndex", "auto"}, {"store", "memory"}};
  r = parse_data_sharing_policy(j);
  ASSERT_TRUE(r.value) << describe(r.problems);
  j["spec"]["replica"] = {{"readIndex", "memory"}};
  r = parse_data_sharing_policy(j);
  ASSERT_TRUE(r.value) << describe(r.problems);
  EXPECT_EQ(r.value->read_index, "memory");
  j["spec"]["replica"] = {{"readIndex", "memory"}, {"store", "memory"}};
  r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.replica.readIndex: memory needs store rocksdb"), std::string::npos);
  j["spec"]["replica"] = {{"readIndex", "hash"}};
  r = parse_data_sharing_policy(j);
  EXPECT_NE(describe(r.problems).find("spec.replica.readIndex: must be auto, none or memory"), std::string::npos);
}

TEST(DataSharingPolicySpec, ApplyWorkersIsOptionalAndBounded) {
  json j = policy_json();
  auto r = parse_data_sharing_policy(j);
  ASSERT_TRUE(r.value) << describe(r.problems);
  EXPECT_EQ(r.value->apply_workers, 0);  // unset: the sidecar picks
  j["spec"]["replica"] = {{"applyWorkers", 2}};
  r = parse_data_sharing_policy(j);
  ASSERT_TRUE(r.value) << describe(r.problems);
  EXPECT_EQ(r.value->apply_workers, 2);
  for (int bad : {0, 65}) {
    j["spec"]["replica"] = {{"applyWorkers", bad}};
    r = parse_data_sharing_policy(j);
    EXPECT_NE(describe(r.problems).find("spec.replica.applyWorkers: must be between 1 and 64"), std::string::npos)
        << bad;
  }
}

TEST(DataSharingPolicySpec, SyncWithFieldsNeedsTheGateway) {
  json j = policy_json();
  j["spec"]["mode"] = "sync";
  auto p = *parse_data_sharing_policy(j).value;
  EXPECT_TRUE(p.needs_gateway());
  j["spec"].erase("fields");
  EXPECT_FALSE(parse_data_sharing_policy(j).value->needs_gateway());
}

}  // namespace
}  // namespace datashare::controllers
