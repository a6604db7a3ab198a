#include "sidecar/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace datashare::sidecar::config {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;

constexpr const char* kValid = R"(
version: 1
dataDir: /var/lib/datashare
kafka:
  bootstrapServers: 127.0.0.1:9092
  properties: {linger.ms: "1"}
listen:
  data: {address: 127.0.0.1, port: 8090}
  admin: {address: 0.0.0.0, port: 9090}
publish:
  - product:
      name: products
      namespace: catalog
      key: id
      fields:
        - {name: id, type: string}
        - {name: name, type: string}
        - {name: price, type: number}
        - {name: supplierEmail, type: string, restricted: true}
    topic: catalog.products.v1
    outbox: {maxEntries: 1000}
subscribe:
  - policy: order-service-products
    namespace: orders
    product:
      name: products
      namespace: catalog
      key: id
      fields:
        - {name: id, type: string}
        - {name: name, type: string}
        - {name: price, type: number}
        - {name: supplierEmail, type: string, restricted: true}
    topic: catalog.products.v1
    group: datashare.orders.order-service-products
    mode: hybrid
    fields: [id, name]
    syncFields: [price, supplierEmail]
    owner: {url: "http://product-service.catalog:8080", readPath: "/products/{key}"}
    maxLag: 5s
    store: memory
    sync:
      timeout: 300ms
      retries: {attempts: 2, backoff: 20ms}
      circuitBreaker: {consecutiveFailures: 5, openFor: 10s}
      cache: {ttl: 30s, maxEntries: 100000, serveStaleOnError: true}
      maxInFlight: 32
)";

auto has_problem(const std::string& path, const std::string& message_part) {
  return Contains(AllOf(Field(&problem::path, path), Field(&problem::message, HasSubstr(message_part))));
}

TEST(SidecarConfigTest, ParsesAValidFile) {
  auto r = parse_config(kValid);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems);
  ASSERT_TRUE(r.config);
  const auto& c = *r.config;
  EXPECT_EQ(c.data_dir, "/var/lib/datashare");
  EXPECT_EQ(c.kafka.bootstrap_servers, "127.0.0.1:9092");
  ASSERT_EQ(c.kafka.properties.size(), 1u);
  EXPECT_EQ(c.kafka.properties[0].first, "linger.ms");
  EXPECT_EQ(c.listen.data.port, 8090);
  ASSERT_TRUE(c.listen.admin);
  EXPECT_EQ(c.listen.admin->address, "0.0.0.0");
  ASSERT_EQ(c.publish.size(), 1u);
  EXPECT_EQ(c.publish[0].outbox.max_entries, 1000u);
  EXPECT_TRUE(c.publish[0].product.find("supplierEmail")->restricted);
  ASSERT_EQ(c.subscribe.size(), 1u);
  const auto& s = c.subscribe[0];
  EXPECT_EQ(s.mode, sharing_mode::hybrid);
  EXPECT_EQ(s.store, store_kind::memory);
  EXPECT_EQ(s.max_lag, std::chrono::seconds(5));
  EXPECT_EQ(s.sync.timeout, std::chrono::milliseconds(300));
  EXPECT_EQ(s.sync.breaker_open_for, std::chrono::seconds(10));
  EXPECT_EQ(s.sync.max_in_flight, 32u);
  EXPECT_EQ(s.fields, (std::vector<std::string>{"id", "name"}));
}

TEST(SidecarConfigTest, ReadIndexIsAutoByDefaultAndMemoryOnlyForRocksdbStores) {
  std::string yaml = kValid;
  const std::string memory_store = "    store: memory\n";
  const auto at = yaml.find(memory_store);
  ASSERT_NE(at, std::string::npos);
  auto with = [&](const std::string& lines) {
    std::string y = yaml;
    y.replace(at, memory_store.size(), lines);
    return parse_config(y);
  };
  auto r = with("    store: rocksdb\n");
  ASSERT_TRUE(r.config) << format_problems(r.problems);
  EXPECT_EQ(r.config->subscribe[0].read_index, read_index_kind::automatic);
  r = with("    store: rocksdb\n    readIndex: memory\n");
  ASSERT_TRUE(r.config) << format_problems(r.problems);
  EXPECT_EQ(r.config->subscribe[0].read_index, read_index_kind::memory);
  r = with("    store: rocksdb\n    readIndex: none\n");
  ASSERT_TRUE(r.config) << format_problems(r.problems);
  EXPECT_EQ(r.config->subscribe[0].read_index, read_index_kind::none);
  r = with("    store: memory\n    readIndex: auto\n");
  ASSERT_TRUE(r.config) << format_problems(r.problems);
  r = with("    store: memory\n    readIndex: memory\n");
  EXPECT_THAT(r.problems, has_problem("subscribe[0].readIndex", "needs store: rocksdb"));
  r = with("    readIndex: hash\n");
  EXPECT_THAT(r.problems, has_problem("subscribe[0].readIndex", "must be auto, none or memory, got \"hash\""));
}

TEST(SidecarConfigTest, MemoryLimitTakesKubernetesSizes) {
  auto with = [](const std::string& value) {
    std::string y = kValid;
    y.insert(y.find("kafka:"), "memoryLimit: " + value + "\n");
    return parse_config(y);
  };
  EXPECT_EQ(parse_config(kValid).config->memory_limit_bytes, 0u);  // detected at start
  const std::pair<const char*, std::uint64_t> good[] = {{"512Mi", 512ULL << 20},   {"2Gi", 2ULL << 30},
                                                        {"16777216", 16ULL << 20}, {"1G", 1000000000ULL},
                                                        {"20000k", 20000000ULL},   {"1Ti", 1ULL << 40}};
  for (const auto& [text, bytes] : good) {
    auto r = with(text);
    ASSERT_TRUE(r.config) << text << ": " << format_problems(r.problems);
    EXPECT_EQ(r.config->memory_limit_bytes, bytes) << text;
  }
  for (const char* bad : {"512MB", "-1Gi", "1.5Gi", "Mi", "15Mi", "99999999999999999999", "9000000000Ti", "{a: 1}"}) {
    auto r = with(bad);
    EXPECT_FALSE(r.config) << bad;
    EXPECT_THAT(r.problems, has_problem("memoryLimit", "at least 16Mi")) << bad;
  }
}

TEST(SidecarConfigTest, ReportsEveryProblemWithItsPath) {
  auto r = parse_config(R"(
version: 1
dataDir: /data
kafka: {bootstrapServers: "k:9092", properties: {sasl.password: hunter2, acks: "1"}}
listen:
  data: {address: 0.0.0.0, port: 70000}
  treads: 2
subscribe:
  - policy: a
    namespace: orders
    product: {name: products, namespace: catalog, key: id,
              fields: [{name: id, type: string}, {name: name, type: string}, {name: price, type: number},
                       {name: secret, type: string, restricted: true}]}
    topic: t
    group: g
    mode: event
    fields: [id, name]
  - policy: b
    namespace: orders
    product: {name: products2, namespace: catalog, key: id,
              fields: [{name: id, type: string}, {name: name, type: string}, {name: price, type: number},
                       {name: secret, type: string, restricted: true}]}
    topic: "bad topic"
    group: g
    mode: event
    fields: [id, name, ratng, secret]
    syncFields: [price]
    maxLag: soon
    store: disk
)");
  EXPECT_FALSE(r.config);
  EXPECT_THAT(r.problems, has_problem("subscribe[1].fields[2]",
                                      R"(unknown field "ratng" (product fields: id, name, price, secret))"));
  EXPECT_THAT(r.problems, has_problem("subscribe[1].fields[3]", "restricted"));
  EXPECT_THAT(r.problems, has_problem("subscribe[1].syncFields", "event mode"));
  EXPECT_THAT(r.problems, has_problem("subscribe[1].maxLag", "not a duration"));
  EXPECT_THAT(r.problems, has_problem("subscribe[1].store", "rocksdb or memory"));
  EXPECT_THAT(r.problems, has_problem("subscribe[1].topic", "not a valid Kafka topic name"));
  EXPECT_THAT(r.problems, has_problem("listen.data.address", "loopback"));
  EXPECT_THAT(r.problems, has_problem("listen.data.port", "between 0 and 65535"));
  EXPECT_THAT(r.problems, has_problem("listen.treads", "unknown key"));
  EXPECT_THAT(r.problems, has_problem("kafka.properties.sasl.password", "secrets cannot be given inline"));
  EXPECT_THAT(r.problems, has_problem("kafka.properties.acks", "cannot be overridden"));
  EXPECT_EQ(r.problems.size(), 11u) << format_problems(r.problems);
  // The secret's value never appears in a message.
  EXPECT_THAT(format_problems(r.problems), ::testing::Not(HasSubstr("hunter2")));
}

TEST(SidecarConfigTest, MissingRequiredKeys) {
  auto r = parse_config(R"(
version: 1
subscribe:
  - mode: event
    fields: [id]
)");
  EXPECT_THAT(r.problems, has_problem("subscribe[0].policy", "is required"));
  EXPECT_THAT(r.problems, has_problem("subscribe[0].namespace", "is required"));
  EXPECT_THAT(r.problems, has_problem("subscribe[0].product", "is required"));
  EXPECT_THAT(r.problems, has_problem("subscribe[0].topic", "is required"));
  EXPECT_THAT(r.problems, has_problem("subscribe[0].group", "is required"));
  EXPECT_THAT(r.problems, has_problem("kafka.bootstrapServers", "is required"));
  EXPECT_THAT(r.problems, has_problem("dataDir", "is required"));
}

TEST(SidecarConfigTest, ProductSchemaProblems) {
  auto r = parse_config(R"(
version: 1
dataDir: /d
kafka: {bootstrapServers: k}
publish:
  - product:
      name: Products
      namespace: catalog
      key: sku
      fields: [{name: id, type: string}, {name: id, type: text}, {name: x}]
    topic: t
    outbox: {maxEntries: 0}
)");
  EXPECT_THAT(r.problems, has_problem("publish[0].product.name", "lowercase DNS name"));
  EXPECT_THAT(r.problems, has_problem("publish[0].product.key", "not one of the fields"));
  EXPECT_THAT(r.problems, has_problem("publish[0].product.fields[1].name", "duplicate field"));
  EXPECT_THAT(r.problems, has_problem("publish[0].product.fields[1].type", "unknown type \"text\""));
  EXPECT_THAT(r.problems, has_problem("publish[0].product.fields[2].type", "is required"));
  EXPECT_THAT(r.problems, has_problem("publish[0].outbox.maxEntries", "between 1 and"));
}

TEST(SidecarConfigTest, SecurityRules) {
  auto r = parse_config(R"(
version: 1
dataDir: /d
kafka:
  bootstrapServers: k
  security:
    protocol: SASL_SSL
    tls: {certFile: /c}
    sasl: {mechanism: MD5, username: u}
subscribe: []
participate: [{product: p}]
)");
  EXPECT_THAT(r.problems, has_problem("kafka.security.tls", "certFile and keyFile go together"));
  EXPECT_THAT(r.problems, has_problem("kafka.security.sasl.mechanism", "must be one of"));
  EXPECT_THAT(r.problems, has_problem("kafka.security.sasl", "exactly one of passwordFile and passwordEnv"));
}

TEST(SidecarConfigTest, MalformedFiles) {
  for (const char* text :
       {"", "[1, 2]", "version: 1\nkafka: [", "just a string", "version: 2\nparticipate: [{product: p}]", "version: x",
        "{version: 1, subscribe: {a: b}}", "version: 1\nsubscribe: [3]"}) {
    auto r = parse_config(text);
    EXPECT_FALSE(r.config) << text;
    EXPECT_FALSE(r.problems.empty()) << text;
  }
  EXPECT_THAT(parse_config("version: 1\nkafka: [").problems, has_problem("", "not valid YAML at line"));
  EXPECT_THAT(parse_config("version: 2\nparticipate: [{product: p}]").problems,
              has_problem("version", "unsupported schema version 2"));
  EXPECT_THAT(parse_config("version: 1\nsubscribe: [3]").problems, has_problem("subscribe[0]", "must be a mapping"));
}

constexpr const char* kParticipants = R"(
version: 1
dataDir: /d
kafka: {bootstrapServers: k}
listen:
  participant: {address: 0.0.0.0, port: 8091}
publish:
  - product: {name: products, namespace: catalog, key: id, fields: [{name: id, type: string}, {name: name, type: string}]}
    topic: catalog.products.v1
subscribe:
  - policy: order-service-products
    namespace: orders
    product: {name: products, namespace: catalog, key: id, fields: [{name: id, type: string}, {name: name, type: string}]}
    topic: catalog.products.v1
    group: g
    mode: sync
    fields: [id, name]
    owner: {url: "http://product-service.catalog:8080", readPath: "/products/{key}"}
participate:
  - {product: products, namespace: catalog, role: owner, coordinatorUrl: "http://gw:8080", lockTimeout: 2s,
     owner: {url: "http://127.0.0.1:8080", writePath: "/products/{key}"}}
)";

TEST(SidecarConfigTest, ParticipantRoles) {
  auto r = parse_config(kParticipants);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems);
  const auto& c = *r.config;
  ASSERT_TRUE(c.listen.participant);
  EXPECT_EQ(c.listen.participant->port, 8091);
  ASSERT_EQ(c.participate.size(), 1u);
  EXPECT_EQ(c.participate[0].role, participant_role::owner);
  EXPECT_EQ(c.participate[0].lock_timeout, std::chrono::seconds(2));
  EXPECT_EQ(c.participate[0].owner_url, "http://127.0.0.1:8080");
  EXPECT_EQ(c.participate[0].owner_write_path, "/products/{key}");

  std::string copy = kParticipants;
  copy = copy.substr(0, copy.find("participate:")) + R"(participate:
  - {product: products, namespace: catalog, role: copy, coordinatorUrl: "http://gw:8080",
     policy: order-service-products}
)";
  auto rc = parse_config(copy);
  ASSERT_TRUE(rc.problems.empty()) << format_problems(rc.problems);
  EXPECT_EQ(rc.config->participate[0].role, participant_role::copy);
  EXPECT_EQ(rc.config->participate[0].policy, "order-service-products");
  EXPECT_EQ(rc.config->participate[0].lock_timeout, std::chrono::seconds(10));
}

TEST(SidecarConfigTest, ParticipantListenerDefaultsTo8091) {
  std::string text = kParticipants;
  text.erase(text.find("listen:"), text.find("publish:") - text.find("listen:"));
  auto r = parse_config(text);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems);
  ASSERT_TRUE(r.config->listen.participant);
  EXPECT_EQ(r.config->listen.participant->address, "0.0.0.0");
  EXPECT_EQ(r.config->listen.participant->port, kDefaultParticipantPort);
}

TEST(SidecarConfigTest, ParticipantRulesAreCheckedAgainstTheWholeFile) {
  auto r = parse_config(R"(
version: 1
kafka: {bootstrapServers: k}
listen:
  data: {address: 127.0.0.1, port: 8090}
  participant: {address: 0.0.0.0, port: 8090}
subscribe:
  - policy: evt
    namespace: orders
    product: {name: products, namespace: catalog, key: id, fields: [{name: id, type: string}]}
    topic: t
    group: g
    mode: event
    fields: [id]
    store: memory
participate:
  - {product: products, namespace: catalog, role: owner, coordinatorUrl: "gw:8080",
     owner: {url: "http://o", writePath: "products"}, lockTimeout: 10ms}
  - {product: products, namespace: catalog, role: copy, coordinatorUrl: "http://gw", policy: evt}
  - {product: items, namespace: catalog, role: copy, coordinatorUrl: "http://gw", policy: nope}
  - {product: things, namespace: catalog, role: boss, coordinatorUrl: "http://gw"}
  - {product: stuff, namespace: catalog, role: owner, coordinatorUrl: "http://gw"}
)");
  EXPECT_THAT(r.problems, has_problem("participate[0].coordinatorUrl", "must start with http://"));
  EXPECT_THAT(r.problems, has_problem("participate[0].owner.writePath", "holding {key}"));
  EXPECT_THAT(r.problems, has_problem("participate[0].lockTimeout", "at least 100ms"));
  EXPECT_THAT(r.problems, has_problem("participate[0].product", "no publish[] entry for product \"products\""));
  EXPECT_THAT(r.problems, has_problem("participate[1].product", "appears twice"));
  EXPECT_THAT(r.problems, has_problem("participate[1].policy", "must be a sync-mode policy with fields"));
  EXPECT_THAT(r.problems, has_problem("participate[2].policy", "no subscribe[] entry has policy \"nope\""));
  EXPECT_THAT(r.problems, has_problem("participate[3].role", "must be owner or copy"));
  EXPECT_THAT(r.problems, has_problem("participate[4].owner", "is required with role owner"));
  EXPECT_THAT(r.problems, has_problem("dataDir", "participant's store"));
  EXPECT_THAT(r.problems, has_problem("listen.participant.port", "must differ"));
}

TEST(SidecarConfigTest, MissingFileIsOneProblem) {
  auto r = load_config_file("/nonexistent/sidecar.yaml");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_THAT(r.problems[0].message, HasSubstr("/nonexistent/sidecar.yaml"));
}

TEST(SidecarConfigTest, OwnerEndpointOfSyncReads) {
  auto r = parse_config(kValid);
  ASSERT_TRUE(r.config) << format_problems(r.problems);
  EXPECT_EQ(r.config->subscribe[0].owner_url, "http://product-service.catalog:8080");
  EXPECT_EQ(r.config->subscribe[0].owner_read_path, "/products/{key}");

  auto with_owner = [](const std::string& owner) {
    std::string yaml = kValid;
    const std::string from = R"(owner: {url: "http://product-service.catalog:8080", readPath: "/products/{key}"})";
    yaml.replace(yaml.find(from), from.size(), owner);
    return parse_config(yaml);
  };
  EXPECT_THAT(with_owner(R"(owner: {url: "http://o:8080"})").problems,
              has_problem("subscribe[0].owner.readPath", "is required in hybrid mode"));
  EXPECT_THAT(with_owner(R"(owner: {url: "http://o:8080", readPath: "products/{key}"})").problems,
              has_problem("subscribe[0].owner.readPath", "must start with / and contain {key} exactly once"));
  EXPECT_THAT(with_owner(R"(owner: {url: "http://o:8080", readPath: "/p/{key}/{key}"})").problems,
              has_problem("subscribe[0].owner.readPath", "exactly once"));
  EXPECT_THAT(with_owner(R"(owner: {url: "http://o:8080", readPath: "/p/{id}"})").problems,
              has_problem("subscribe[0].owner.readPath", "exactly once"));
  EXPECT_THAT(with_owner(R"(owner: {url: "http://o:8080/api", readPath: "/p/{key}"})").problems,
              has_problem("subscribe[0].owner.url", "no path"));
  EXPECT_THAT(with_owner(R"(owner: {url: "https://o", readPath: "/p/{key}"})").problems,
              has_problem("subscribe[0].owner.url", "must be http://host[:port]"));
  EXPECT_THAT(with_owner(R"(owner: {url: "http://o:99999", readPath: "/p/{key}"})").problems,
              has_problem("subscribe[0].owner.url", "must be http://host[:port]"));
  EXPECT_THAT(with_owner(R"(owner: {url: "http://o", readPath: "/p/{key}", path: x})").problems,
              has_problem("subscribe[0].owner.path", ""));
  EXPECT_TRUE(with_owner(R"(owner: {url: "http://o/", readPath: "/v1/p/{key}?view=full"})").problems.empty());
}

TEST(SidecarConfigTest, HttpOrigins) {
  auto o = parse_http_origin("http://127.0.0.1:8080");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->host, "127.0.0.1");
  EXPECT_EQ(o->port, 8080);
  o = parse_http_origin("http://product-service.catalog");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->port, 80);
  EXPECT_FALSE(parse_http_origin("http://"));
  EXPECT_FALSE(parse_http_origin("http://:80"));
  EXPECT_FALSE(parse_http_origin("http://h:"));
  EXPECT_FALSE(parse_http_origin("http://h:0"));
  EXPECT_FALSE(parse_http_origin("http://u@h"));
  EXPECT_FALSE(parse_http_origin("ftp://h"));
}

TEST(SidecarConfigTest, Durations) {
  EXPECT_EQ(parse_duration("300ms"), std::chrono::milliseconds(300));
  EXPECT_EQ(parse_duration("5s"), std::chrono::milliseconds(5000));
  EXPECT_EQ(parse_duration("1m30s"), std::chrono::milliseconds(90000));
  EXPECT_EQ(parse_duration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(parse_duration("2h"), std::chrono::hours(2));
  EXPECT_EQ(parse_duration("0"), std::chrono::milliseconds(0));
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("5"));
  EXPECT_FALSE(parse_duration("s"));
  EXPECT_FALSE(parse_duration("5 s"));
  EXPECT_FALSE(parse_duration("-5s"));
  EXPECT_FALSE(parse_duration("5d"));
  EXPECT_FALSE(parse_duration("1e400s"));
}

TEST(SidecarConfigTest, BusyPollMicros) {
  auto with = [](const std::string& value) {
    std::string text = kValid;
    text.replace(text.find("listen:\n"), 8, "listen:\n  busyPollMicros: " + value + "\n");
    return parse_config(text);
  };
  auto plain = parse_config(kValid);
  ASSERT_TRUE(plain.config) << format_problems(plain.problems);
  EXPECT_EQ(plain.config->listen.busy_poll_us, 0);  // off unless asked for
  auto on = with("50");
  ASSERT_TRUE(on.config) << format_problems(on.problems);
  EXPECT_EQ(on.config->listen.busy_poll_us, 50);
  for (const char* bad : {"1001", "-1", "fast"}) {
    auto r = with(bad);
    EXPECT_FALSE(r.config) << bad;
    EXPECT_THAT(r.problems, has_problem("listen.busyPollMicros", "")) << bad;
  }
}

// How many threads apply a backlog's partitions: 0 (the default) leaves it to the replica.
TEST(SidecarConfigTest, ApplyWorkers) {
  auto with = [](const std::string& value) {
    std::string text = kValid;
    text.replace(text.find("    maxLag: 5s\n"), 15, "    maxLag: 5s\n    applyWorkers: " + value + "\n");
    return parse_config(text);
  };
  auto plain = parse_config(kValid);
  ASSERT_TRUE(plain.config) << format_problems(plain.problems);
  EXPECT_EQ(plain.config->subscribe[0].apply_workers, 0u);
  auto two = with("2");
  ASSERT_TRUE(two.config) << format_problems(two.problems);
  EXPECT_EQ(two.config->subscribe[0].apply_workers, 2u);
  for (const char* bad : {"65", "-1", "many"}) {
    auto r = with(bad);
    EXPECT_FALSE(r.config) << bad;
    EXPECT_THAT(r.problems, has_problem("subscribe[0].applyWorkers", "")) << bad;
  }
}

}  // namespace
}  // namespace datashare::sidecar::config
