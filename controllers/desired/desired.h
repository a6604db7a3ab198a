#pragma once
// Desired state as pure functions (DESIGN.md §2: "compute the difference with pure functions"):
// what topic a DataProduct needs and what to change on the broker, the sidecar config of a
// workload, the pod-template patch that injects the sidecar, and the gateway's objects. No I/O
// here; the reconcilers read caches, call these, and apply the result. Unit tests pin the
// outputs (golden files under controllers/desired/testdata/).

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "controllers/api/spec.h"

namespace datashare::controllers {

// ---- Topics ---------------------------------------------------------------------------------

struct desired_topic {
  std::string name;
  int32_t partitions = 3;
  int32_t replication_factor = -1;            // -1: broker default
  std::map<std::string, std::string> config;  // cleanup.policy defaulted to compact
};

desired_topic topic_for(const data_product& product);

// What the broker has (topic-level overrides only: values set on the topic, not defaults).
struct observed_topic {
  std::string name;
  int32_t partitions = 0;
  int32_t replication_factor = 0;
  std::map<std::string, std::string> config;
};

struct topic_plan {
  bool create = false;
  int32_t add_partitions_to = 0;  // 0: none
  bool set_config = false;        // replace the topic's overrides with `config`
  std::map<std::string, std::string> config;
  std::vector<std::string> drifted;  // "retention.ms: 1000 → (default)", for events and messages
  // Set when the spec cannot be reached: reason (CamelCase) and message for the condition.
  std::string refused_reason;
  std::string refused_message;

  bool noop() const { return !create && add_partitions_to == 0 && !set_config; }
};

topic_plan plan_topic(const desired_topic& desired, const std::optional<observed_topic>& observed);

// Of several products claiming one topic, the oldest owns it (creation time, then namespace/name).
// Returns the key ("ns/name") of the owner.
std::string topic_owner(const std::vector<data_product>& claimants);

// ---- Sidecar --------------------------------------------------------------------------------

struct sidecar_settings {
  std::string kafka_bootstrap;
  std::string kafka_protocol = "PLAINTEXT";  // PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
  std::string kafka_sasl_mechanism;
  std::string kafka_sasl_username;
  bool kafka_client_certificate = false;              // the Secret has tls.crt and tls.key (mutual TLS)
  std::string kafka_secret_name = "datashare-kafka";  // in the workload's namespace, when not PLAINTEXT
  std::string image = "datashare-sidecar:latest";
  std::string cpu_request = "50m";
  std::string memory_request = "32Mi";
  std::string memory_limit = "128Mi";
  // The sidecar's `listen.threads` and `listen.busyPollMicros` (sidecar/README.md). Rendered only
  // when they differ from the sidecar's own defaults (1 and 0), so a new operator leaves the
  // config, and with it the pod template's hash, of every existing sidecar as it was.
  int io_threads = 1;
  int busy_poll_micros = 0;
  uint16_t data_port = 8090;         // loopback only: the application's API
  uint16_t admin_port = 9090;        // probes and metrics
  uint16_t participant_port = 8091;  // gateway transactions
  uint16_t gateway_port = 8080;
  uint16_t gateway_admin_port = 9090;
  std::string gateway_image = "datashare-gateway:latest";
};

struct workload_id {
  std::string ns;
  std::string kind = "Deployment";
  std::string name;

  std::string key() const { return ns + "/" + kind + "/" + name; }
  bool operator<(const workload_id& o) const { return key() < o.key(); }
  bool operator==(const workload_id& o) const = default;
};

// A policy together with the product it resolved to (both valid, access granted).
struct resolved_policy {
  data_sharing_policy policy;
  data_product product;
};

// Everything one workload's sidecar does. Empty (no products, no policies): no sidecar.
struct sidecar_plan {
  workload_id workload;
  std::vector<data_product> publishes;      // products this workload owns
  std::vector<resolved_policy> subscribes;  // policies this workload consumes
  // Keys ("ns/name") of the products in `publishes` that have a gateway: this workload is then
  // its owner participant. Copy participants are the subscribes with policy.needs_gateway().
  std::vector<std::string> owner_gateways;

  bool empty() const { return publishes.empty() && subscribes.empty(); }
  bool participates() const;
};

std::string sidecar_config_map_name(const workload_id& w);
std::string participant_service_name(const workload_id& w);
std::string gateway_name(const data_product& p);
std::string gateway_url(const data_product& p, const sidecar_settings& s);
// Whether the product's gateway exists: some valid policy of it needs one.
bool product_needs_gateway(const data_product& p, const std::vector<resolved_policy>& policies_of_product);

// The sidecar's config file (sidecar/config/README.md, schema version 1), deterministic: entries
// sorted, so equal inputs give byte-equal text and the hash changes only with the content.
std::string render_sidecar_config(const sidecar_plan& plan, const sidecar_settings& settings);

// FNV-1a 64 of the text, 16 hex digits: the pod template's config-hash annotation.
std::string config_hash(const std::string& text);

inline constexpr const char* kFieldManager = "datashare-operator";
inline constexpr const char* kConfigHashAnnotation = "datashare.io/config-hash";
inline constexpr const char* kSidecarContainer = "datashare-sidecar";
inline constexpr const char* kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char* kManagedBy = "datashare-operator";

// Owner references of the objects a workload's sidecar needs: every contributing product and
// policy (none is the controller: the object lives while any of them does).
json owner_references(const sidecar_plan& plan);

json sidecar_config_map(const sidecar_plan& plan, const std::string& config_text);

// Server-side apply intent of the field manager on the workload: the native sidecar (init
// container with restartPolicy Always), its volumes and the config-hash annotation. Applying the
// empty intent (`remove_sidecar_intent`) removes all of it and nothing else.
json sidecar_apply_intent(const sidecar_plan& plan, const std::string& hash, const sidecar_settings& settings);
json remove_sidecar_intent(const workload_id& w);

// A headless Service selecting the workload's pods on the participant port (gateway → pods).
json participant_service(const sidecar_plan& plan, const json& pod_selector, const sidecar_settings& settings);

// ---- Gateway --------------------------------------------------------------------------------

// The coordinator's config file (gateway/README.md): the product, the participants (the owner and
// each copy-keeping consumer workload), its log directory and ports.
std::string render_gateway_config(const data_product& product, const std::vector<resolved_policy>& copies,
                                  const sidecar_settings& settings);

// ConfigMap, Service, PersistentVolumeClaim (the decision log must survive the pod) and
// Deployment (one replica, Recreate), each controlled by the product.
std::vector<json> gateway_objects(const data_product& product, const std::vector<resolved_policy>& copies,
                                  const sidecar_settings& settings);

}  // namespace datashare::controllers
