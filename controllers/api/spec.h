#pragma once
// The two custom resources as the controllers read them: DataProduct and DataSharingPolicy
// (datashare.io/v1alpha1, crds/). The API server has already applied the schema, defaults and CEL
// rules, but the operator must not trust that (an older CRD, a CRD installed without validation,
// a field the schema cannot check): parsing is total, collects every problem with its field path,
// and never throws. A resource with problems gets a condition, never a crash.

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace datashare::controllers {

using json = nlohmann::json;

inline constexpr const char* kGroup = "datashare.io";
inline constexpr const char* kVersion = "v1alpha1";
inline constexpr const char* kApiVersion = "datashare.io/v1alpha1";

struct spec_problem {
  std::string path;  // "spec.topic.partitions"
  std::string message;
};

// "spec.fields[2].type: unknown type "strng""; one line per problem, "; "-joined.
std::string describe(const std::vector<spec_problem>& problems);

struct object_meta {
  std::string ns;
  std::string name;
  std::string uid;
  int64_t generation = 0;
  std::string creation_timestamp;
  bool deleting = false;

  std::string key() const { return ns + "/" + name; }
};

object_meta meta_of(const json& object);

struct workload_ref {
  std::string kind = "Deployment";  // Deployment | StatefulSet
  std::string name;
};

struct product_field {
  std::string name;
  std::string type = "string";  // string | number | integer | boolean | object | array
  bool restricted = false;
};

struct topic_spec {
  std::string name;
  int32_t partitions = 3;
  int32_t replication_factor = -1;  // -1: the broker's default
  std::map<std::string, std::string> config;
  std::string deletion_policy = "Retain";  // Retain | Delete
};

struct data_product {
  object_meta meta;
  workload_ref owner;
  std::string endpoint_service;
  int32_t endpoint_port = 0;
  std::string endpoint_scheme = "http";
  std::string read_path;   // contains {key}; empty when the owner serves no reads
  std::string write_path;  // contains {key}; empty when the owner takes no writes
  uint64_t outbox_max_entries = 100000;
  std::string key;
  std::vector<product_field> fields;
  topic_spec topic;
  std::vector<std::string> access_namespaces;  // besides its own; "*" = every namespace

  const product_field* find_field(const std::string& name) const;
  // Whether a policy in namespace `ns` may share this product.
  bool allows(const std::string& ns) const;
  // "http://<service>.<ns>.svc:<port>" (empty without an endpoint).
  std::string owner_url() const;
};

struct sync_settings {
  std::string timeout = "300ms";
  int32_t retry_attempts = 2;
  std::string retry_backoff = "20ms";
  int32_t breaker_consecutive_failures = 5;
  std::string breaker_open_for = "10s";
  std::string cache_ttl = "30s";
  int64_t cache_max_entries = 100000;
  bool serve_stale_on_error = true;
  int32_t max_in_flight = 64;
};

struct data_sharing_policy {
  object_meta meta;
  std::string product_name;
  std::string product_namespace;  // defaulted to the policy's namespace
  workload_ref consumer;
  std::string mode;  // sync | event | hybrid
  std::vector<std::string> fields;
  std::vector<std::string> sync_fields;
  std::string max_lag = "5s";
  std::chrono::milliseconds max_lag_duration{5000};
  sync_settings sync;
  std::string store = "rocksdb";    // rocksdb | memory
  std::string read_index = "auto";  // auto | none | memory (rocksdb only): the sidecar's readIndex
  int64_t max_event_bytes = 1 << 20;
  int64_t apply_workers = 0;  // 1..64, 0 = unset: the sidecar picks (one per partition up to 8)

  std::string product_key() const { return product_namespace + "/" + product_name; }
  // The consumer group the replica commits to (outside tools and the operator read lag there).
  std::string consumer_group() const { return "datashare." + meta.ns + "." + meta.name; }
  // Does this policy keep a local copy (event, hybrid; sync with fields)?
  bool keeps_copy() const { return !fields.empty(); }
  // The copy is fed from the topic by the sidecar's replica (event and hybrid modes), so it can
  // lag behind. A sync-mode copy is written by the gateway inside each transaction instead: its
  // consumer group never commits, and there is no lag to measure.
  bool consumes_topic() const { return keeps_copy() && mode != "sync"; }
  // A sync-mode policy with fields keeps a copy the gateway updates all-or-nothing.
  bool needs_gateway() const { return mode == "sync" && !fields.empty(); }
};

template <typename T>
struct parsed {
  std::optional<T> value;  // set when problems is empty
  std::vector<spec_problem> problems;
};

parsed<data_product> parse_data_product(const json& object);
parsed<data_sharing_policy> parse_data_sharing_policy(const json& object);

}  // namespace datashare::controllers
