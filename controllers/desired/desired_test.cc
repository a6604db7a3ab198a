#include "controllers/desired/desired.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "sidecar/config/config.h"

namespace datashare::controllers {
namespace {

// Golden files: the expected outputs, reviewed like code. DATASHARE_UPDATE_GOLDEN=1 rewrites them.
void expect_golden(const std::string& name, const std::string& actual) {
  std::string path = std::string(DATASHARE_TESTDATA_DIR) + "/" + name;
  if (std::getenv("DATASHARE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << actual;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing golden file " << path << " (run with DATASHARE_UPDATE_GOLDEN=1)";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), actual) << "golden file " << path << " differs";
}

data_product products() {
  data_product p;
  p.meta = {.ns = "catalog",
            .name = "products",
            .uid = "uid-products",
            .generation = 1,
            .creation_timestamp = "2026-11-22T10:00:00Z"};
  p.owner = {"Deployment", "product-service"};
  p.endpoint_service = "product-service";
  p.endpoint_port = 8080;
  p.read_path = "/products/{key}";
  p.write_path = "/products/{key}";
  p.key = "id";
  p.fields = {{"id", "string", false},
              {"name", "string", false},
              {"price", "number", false},
              {"supplierEmail", "string", true}};
  p.topic = {.name = "catalog.products.v1",
             .partitions = 6,
             .replication_factor = 1,
             .config = {{"min.insync.replicas", "1"}},
             .deletion_policy = "Retain"};
  p.access_namespaces = {"orders", "shipping"};
  return p;
}

data_sharing_policy policy(const std::string& ns, const std::string& name, const std::string& workload,
                           const std::string& mode, std::vector<std::string> fields,
                           std::vector<std::string> sync_fields) {
  data_sharing_policy p;
  p.meta = {.ns = ns, .name = name, .uid = "uid-" + name, .generation = 1};
  p.product_name = "products";
  p.product_namespace = "catalog";
  p.consumer = {"Deployment", workload};
  p.mode = mode;
  p.fields = std::move(fields);
  p.sync_fields = std::move(sync_fields);
  return p;
}

sidecar_settings settings() {
  sidecar_settings s;
  s.kafka_bootstrap = "kafka.datashare.svc:9092";
  s.image = "registry.example/datashare-sidecar:0.1.0";
  s.gateway_image = "registry.example/datashare-gateway:0.1.0";
  return s;
}

// The rendered file must be one the sidecar itself accepts: the contract checked from both sides.
void expect_sidecar_accepts(const std::string& text) {
  auto r = sidecar::config::parse_config(text);
  EXPECT_TRUE(r.problems.empty()) << sidecar::config::format_problems(r.problems) << "\n" << text;
}

TEST(TopicPlan, CreatesAMissingTopicCompactedByDefault) {
  auto d = topic_for(products());
  EXPECT_EQ(d.config.at("cleanup.policy"), "compact");
  EXPECT_EQ(d.config.at("min.insync.replicas"), "1");
  auto plan = plan_topic(d, std::nullopt);
  EXPECT_TRUE(plan.create);
  EXPECT_EQ(plan.config, d.config);
}

TEST(TopicPlan, ExplicitCleanupPolicyWins) {
  auto p = products();
  p.topic.config["cleanup.policy"] = "delete";
  EXPECT_EQ(topic_for(p).config.at("cleanup.policy"), "delete");
}

TEST(TopicPlan, NothingToDoWhenTheBrokerMatches) {
  auto d = topic_for(products());
  observed_topic o{d.name, 6, 1, d.config};
  EXPECT_TRUE(plan_topic(d, o).noop());
}

TEST(TopicPlan, RevertsConfigDriftBothWays) {
  auto d = topic_for(products());
  observed_topic o{d.name, 6, 1, {{"cleanup.policy", "delete"}, {"retention.ms", "1000"}}};
  auto plan = plan_topic(d, o);
  EXPECT_TRUE(plan.set_config);
  EXPECT_EQ(plan.config, d.config);
  ASSERT_EQ(plan.drifted.size(), 3u);
  EXPECT_EQ(plan.drifted[0], "cleanup.policy: delete → compact");
  EXPECT_EQ(plan.drifted[1], "min.insync.replicas: (default) → 1");
  EXPECT_EQ(plan.drifted[2], "retention.ms: 1000 → (default)");
}

TEST(TopicPlan, GrowsPartitionsAndRefusesToShrink) {
  auto d = topic_for(products());
  auto grow = plan_topic(d, observed_topic{d.name, 3, 1, d.config});
  EXPECT_EQ(grow.add_partitions_to, 6);
  EXPECT_TRUE(grow.refused_reason.empty());
  auto shrink = plan_topic(d, observed_topic{d.name, 12, 1, d.config});
  EXPECT_EQ(shrink.add_partitions_to, 0);
  EXPECT_EQ(shrink.refused_reason, "PartitionDecreaseNotSupported");
  EXPECT_NE(shrink.refused_message.find("has 12 partitions"), std::string::npos);
}

TEST(TopicPlan, ReplicationFactorMismatchIsReportedNotChanged) {
  auto d = topic_for(products());
  auto plan = plan_topic(d, observed_topic{d.name, 6, 3, d.config});
  EXPECT_EQ(plan.refused_reason, "ReplicationFactorMismatch");
  EXPECT_TRUE(plan.noop());
  d.replication_factor = -1;  // broker default: any factor is fine
  EXPECT_TRUE(plan_topic(d, observed_topic{d.name, 6, 3, d.config}).refused_reason.empty());
}

TEST(TopicOwner, OldestClaimWins) {
  auto a = products();
  auto b = products();
  b.meta.ns = "other";
  b.meta.creation_timestamp = "2026-11-22T09:00:00Z";
  EXPECT_EQ(topic_owner({a, b}), "other/products");
  b.meta.creation_timestamp = a.meta.creation_timestamp;
  EXPECT_EQ(topic_owner({b, a}), "catalog/products");  // same second: namespace/name decides
}

TEST(SidecarConfig, OwnerPublishes) {
  sidecar_plan plan{.workload = {"catalog", "Deployment", "product-service"}, .publishes = {products()}};
  std::string text = render_sidecar_config(plan, settings());
  expect_golden("sidecar-owner.yaml", text);
  expect_sidecar_accepts(text);
}

TEST(SidecarConfig, ConsumerWithTwoPoliciesSharesOneSidecar) {
  auto other = products();
  other.meta.name = "suppliers";
  other.topic.name = "catalog.suppliers.v1";
  auto p2 = policy("shipping", "shipping-suppliers", "shipping-service", "event", {"id", "name"}, {});
  p2.product_name = "suppliers";
  sidecar_plan plan{
      .workload = {"shipping", "Deployment", "shipping-service"},
      .subscribes = {{p2, other},
                     {policy("shipping", "shipping-products", "shipping-service", "event", {"id", "name", "price"}, {}),
                      products()}}};
  std::string text = render_sidecar_config(plan, settings());
  expect_golden("sidecar-event-two-policies.yaml", text);
  expect_sidecar_accepts(text);
  // Order of the inputs does not change the output (and so not the hash).
  std::swap(plan.subscribes[0], plan.subscribes[1]);
  EXPECT_EQ(render_sidecar_config(plan, settings()), text);
}

TEST(SidecarConfig, HybridReadsSyncFieldsThroughTheOwner) {
  sidecar_plan plan{.workload = {"orders", "Deployment", "order-service"},
                    .subscribes = {{policy("orders", "order-service-products", "order-service", "hybrid",
                                           {"id", "name"}, {"price", "supplierEmail"}),
                                    products()}}};
  std::string text = render_sidecar_config(plan, settings());
  expect_golden("sidecar-hybrid.yaml", text);
  expect_sidecar_accepts(text);
  EXPECT_NE(text.find(R"(owner: {url: http://product-service.catalog.svc:8080, readPath: "/products/{key}"})"),
            std::string::npos);
}

TEST(SidecarConfig, GatewayParticipants) {
  auto copy = policy("billing", "billing-products", "billing-service", "sync", {"id", "name"}, {"price"});
  sidecar_plan owner{.workload = {"catalog", "Deployment", "product-service"},
                     .publishes = {products()},
                     .owner_gateways = {"catalog/products"}};
  sidecar_plan consumer{.workload = {"billing", "Deployment", "billing-service"}, .subscribes = {{copy, products()}}};
  EXPECT_TRUE(owner.participates());
  EXPECT_TRUE(consumer.participates());
  expect_golden("sidecar-gateway-owner.yaml", render_sidecar_config(owner, settings()));
  expect_golden("sidecar-gateway-copy.yaml", render_sidecar_config(consumer, settings()));
  expect_sidecar_accepts(render_sidecar_config(owner, settings()));
  expect_sidecar_accepts(render_sidecar_config(consumer, settings()));
  EXPECT_TRUE(product_needs_gateway(products(), {{copy, products()}}));
  auto no_write = products();
  no_write.write_path.clear();
  EXPECT_FALSE(product_needs_gateway(no_write, {{copy, products()}}));
}

TEST(SidecarConfig, IoTuningIsRenderedOnlyWhenSet) {
  sidecar_plan plan{.workload = {"catalog", "Deployment", "product-service"}, .publishes = {products()}};
  std::string plain = render_sidecar_config(plan, settings());
  // The sidecar's defaults are left to the sidecar: an operator with these flags unset renders
  // what earlier operators rendered (same hash, no rollout of existing workloads).
  EXPECT_EQ(plain.find("threads"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("busyPollMicros"), std::string::npos) << plain;
  auto tuned = settings();
  tuned.io_threads = 2;
  tuned.busy_poll_micros = 150;
  std::string text = render_sidecar_config(plan, tuned);
  EXPECT_NE(text.find("threads: 2"), std::string::npos) << text;
  EXPECT_NE(text.find("busyPollMicros: 150"), std::string::npos) << text;
  expect_sidecar_accepts(text);
  auto parsed = sidecar::config::parse_config(text);
  ASSERT_TRUE(parsed.config) << text;
  EXPECT_EQ(parsed.config->listen.threads, 2);
  EXPECT_EQ(parsed.config->listen.busy_poll_us, 150);
  EXPECT_NE(config_hash(text), config_hash(plain));
}

TEST(SidecarConfig, ReadIndexIsRenderedOnlyWhenNotTheSidecarsDefault) {
  auto pol = policy("orders", "order-service-products", "order-service", "event", {"id", "name"}, {});
  sidecar_plan plan{.workload = {"orders", "Deployment", "order-service"}, .subscribes = {{pol, products()}}};
  std::string plain = render_sidecar_config(plan, settings());
  EXPECT_EQ(plain.find("readIndex"), std::string::npos) << plain;
  auto plain_parsed = sidecar::config::parse_config(plain);
  ASSERT_TRUE(plain_parsed.config) << plain;
  EXPECT_EQ(plain_parsed.config->subscribe[0].read_index, sidecar::config::read_index_kind::automatic);
  for (const auto& [value, kind] : {std::pair{"memory", sidecar::config::read_index_kind::memory},
                                    std::pair{"none", sidecar::config::read_index_kind::none}}) {
    plan.subscribes[0].policy.read_index = value;
    std::string text = render_sidecar_config(plan, settings());
    EXPECT_NE(text.find(std::string("readIndex: ") + value), std::string::npos) << text;
    expect_sidecar_accepts(text);
    auto parsed = sidecar::config::parse_config(text);
    ASSERT_TRUE(parsed.config) << text;
    EXPECT_EQ(parsed.config->subscribe[0].read_index, kind);
    EXPECT_NE(config_hash(text), config_hash(plain));
  }
}

TEST(SidecarConfig, ApplyWorkersIsRenderedOnlyWhenSet) {
  auto pol = policy("orders", "order-service-products", "order-service", "event", {"id", "name"}, {});
  sidecar_plan plan{.workload = {"orders", "Deployment", "order-service"}, .subscribes = {{pol, products()}}};
  std::string plain = render_sidecar_config(plan, settings());
  EXPECT_EQ(plain.find("applyWorkers"), std::string::npos) << plain;
  plan.subscribes[0].policy.apply_workers = 3;
  std::string text = render_sidecar_config(plan, settings());
  EXPECT_NE(text.find("applyWorkers: 3"), std::string::npos) << text;
  expect_sidecar_accepts(text);
  auto parsed = sidecar::config::parse_config(text);
  ASSERT_TRUE(parsed.config) << text;
  EXPECT_EQ(parsed.config->subscribe[0].apply_workers, 3u);
  EXPECT_NE(config_hash(text), config_hash(plain));
}

TEST(SidecarConfig, KafkaSecurityComesFromMountedFiles) {
  auto s = settings();
  s.kafka_protocol = "SASL_SSL";
  s.kafka_sasl_mechanism = "SCRAM-SHA-512";
  s.kafka_sasl_username = "datashare";
  sidecar_plan plan{.workload = {"catalog", "Deployment", "product-service"}, .publishes = {products()}};
  std::string text = render_sidecar_config(plan, s);
  EXPECT_NE(text.find("passwordFile: /etc/datashare/kafka/sasl.password"), std::string::npos) << text;
  expect_sidecar_accepts(text);
  json intent = sidecar_apply_intent(plan, "h", s);
  EXPECT_EQ(intent["spec"]["template"]["spec"]["volumes"][2]["secret"]["secretName"], "datashare-kafka");
}

TEST(SidecarConfig, AClientCertificateIsRenderedAsFilesOfTheMountedSecret) {
  auto s = settings();
  s.kafka_protocol = "SSL";
  sidecar_plan plan{.workload = {"catalog", "Deployment", "product-service"}, .publishes = {products()}};
  std::string without = render_sidecar_config(plan, s);
  EXPECT_NE(without.find("caFile: /etc/datashare/kafka/ca.crt"), std::string::npos) << without;
  EXPECT_EQ(without.find("certFile"), std::string::npos) << without;
  s.kafka_client_certificate = true;
  std::string text = render_sidecar_config(plan, s);
  EXPECT_NE(text.find("certFile: /etc/datashare/kafka/tls.crt"), std::string::npos) << text;
  EXPECT_NE(text.find("keyFile: /etc/datashare/kafka/tls.key"), std::string::npos) << text;
  EXPECT_EQ(text.find("sasl"), std::string::npos) << text;
  expect_sidecar_accepts(text);
}

TEST(ConfigHash, StableAndSensitive) {
  EXPECT_EQ(config_hash("a"), config_hash("a"));
  EXPECT_NE(config_hash("a"), config_hash("b"));
  EXPECT_EQ(config_hash("").size(), 16u);
}

TEST(SidecarObjects, ConfigMapAndPodTemplateIntent) {
  sidecar_plan plan{
      .workload = {"orders", "Deployment", "order-service"},
      .subscribes = {
          {policy("orders", "order-service-products", "order-service", "event", {"id", "name"}, {}), products()}}};
  std::string text = render_sidecar_config(plan, settings());
  json cm = sidecar_config_map(plan, text);
  EXPECT_EQ(cm["metadata"]["name"], "datashare-sidecar-order-service");
  EXPECT_EQ(cm["metadata"]["ownerReferences"][0]["kind"], "DataSharingPolicy");
  EXPECT_EQ(cm["data"]["sidecar.yaml"], text);
  json intent = sidecar_apply_intent(plan, config_hash(text), settings());
  expect_golden("sidecar-intent.json", intent.dump(2) + "\n");
  const json& c = intent["spec"]["template"]["spec"]["initContainers"][0];
  EXPECT_EQ(c["restartPolicy"], "Always");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_EQ(remove_sidecar_intent(plan.workload).dump(),
            R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"order-service","namespace":"orders"}})");
  workload_id sts{"orders", "StatefulSet", "order-service"};
  EXPECT_EQ(sidecar_config_map_name(sts), "datashare-sidecar-statefulset-order-service");
}

TEST(Gateway, ObjectsOwnedByTheProduct) {
  auto copy = policy("billing", "billing-products", "billing-service", "sync", {"id", "name"}, {"price"});
  auto event = policy("shipping", "shipping-products", "shipping-service", "event", {"id"}, {});
  auto objects = gateway_objects(products(), {{copy, products()}, {event, products()}}, settings());
  ASSERT_EQ(objects.size(), 4u);
  json all = json::array();
  for (auto& o : objects) {
    EXPECT_EQ(o["metadata"]["ownerReferences"][0]["uid"], "uid-products");
    EXPECT_EQ(o["metadata"]["ownerReferences"][0]["controller"], true);
    all.push_back(o);
  }
  expect_golden("gateway-objects.json", all.dump(2) + "\n");
  std::string cfg = objects[0]["data"]["gateway.yaml"];
  EXPECT_NE(cfg.find("http://datashare-tx-billing-service.billing.svc:8091"), std::string::npos) << cfg;
  EXPECT_EQ(cfg.find("shipping"), std::string::npos) << "event-mode consumers keep no gateway copy";
}

}  // namespace
}  // namespace datashare::controllers
