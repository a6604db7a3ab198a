#include "controllers/desired/desired.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <tuple>

namespace datashare::controllers {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Resource names: DNS-1123 subdomain, 253 characters; kind prefix keeps a Deployment and a
// StatefulSet of one name apart.
std::string workload_suffix(const workload_id& w) {
  return w.kind == "Deployment" ? w.name : lower(w.kind) + "-" + w.name;
}

json labels_for(const std::string& component) {
  return {{kManagedByLabel, kManagedBy},
          {"app.kubernetes.io/part-of", "datashare"},
          {"app.kubernetes.io/component", component}};
}

json owner_ref(const object_meta& m, const char* kind, bool controller) {
  json r = {{"apiVersion", kApiVersion}, {"kind", kind}, {"name", m.name}, {"uid", m.uid}};
  if (controller) {
    r["controller"] = true;
    r["blockOwnerDeletion"] = true;
  }
  return r;
}

void emit_product(YAML::Emitter& y, const data_product& p) {
  y << YAML::Key << "product" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "name" << YAML::Value << p.meta.name;
  y << YAML::Key << "namespace" << YAML::Value << p.meta.ns;
  y << YAML::Key << "key" << YAML::Value << p.key;
  y << YAML::Key << "fields" << YAML::Value << YAML::BeginSeq;
  for (const auto& f : p.fields) {
    y << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << f.name << YAML::Key << "type"
      << YAML::Value << f.type;
    if (f.restricted) y << YAML::Key << "restricted" << YAML::Value << true;
    y << YAML::EndMap;
  }
  y << YAML::EndSeq << YAML::EndMap;
}

void emit_strings(YAML::Emitter& y, const char* key, const std::vector<std::string>& v) {
  y << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& s : v) y << s;
  y << YAML::EndSeq;
}

void emit_endpoint(YAML::Emitter& y, const char* key, const char* address, uint16_t port) {
  y << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "address" << YAML::Value
    << address << YAML::Key << "port" << YAML::Value << port << YAML::EndMap;
}

template <typename T, typename Key>
std::vector<T> sorted_by(std::vector<T> v, Key key) {
  std::sort(v.begin(), v.end(), [&](const T& a, const T& b) { return key(a) < key(b); });
  return v;
}

}  // namespace

// ---- Topics ---------------------------------------------------------------------------------

desired_topic topic_for(const data_product& product) {
  desired_topic t;
  t.name = product.topic.name;
  t.partitions = product.topic.partitions;
  t.replication_factor = product.topic.replication_factor;
  t.config = product.topic.config;
  t.config.emplace("cleanup.policy", "compact");  // event-carried state: a new replica bootstraps from it
  return t;
}

topic_plan plan_topic(const desired_topic& desired, const std::optional<observed_topic>& observed) {
  topic_plan plan;
  plan.config = desired.config;
  if (!observed) {
    plan.create = true;
    return plan;
  }
  if (desired.partitions < observed->partitions) {
    plan.refused_reason = "PartitionDecreaseNotSupported";
    plan.refused_message = "topic " + desired.name + " has " + std::to_string(observed->partitions) +
                           " partitions; Kafka cannot remove partitions (spec asks for " +
                           std::to_string(desired.partitions) + ")";
  } else if (desired.partitions > observed->partitions) {
    plan.add_partitions_to = desired.partitions;
  }
  if (desired.replication_factor > 0 && observed->replication_factor != desired.replication_factor &&
      plan.refused_reason.empty()) {
    plan.refused_reason = "ReplicationFactorMismatch";
    plan.refused_message = "topic " + desired.name + " has replication factor " +
                           std::to_string(observed->replication_factor) + ", spec asks for " +
                           std::to_string(desired.replication_factor) +
                           "; change it with a partition reassignment, the operator does not";
  }
  for (const auto& [k, v] : desired.config) {
    auto it = observed->config.find(k);
    if (it == observed->config.end()) {
      plan.drifted.push_back(k + ": (default) → " + v);
    } else if (it->second != v) {
      plan.drifted.push_back(k + ": " + it->second + " → " + v);
    }
  }
  for (const auto& [k, v] : observed->config) {
    if (!desired.config.contains(k)) plan.drifted.push_back(k + ": " + v + " → (default)");
  }
  plan.set_config = !plan.drifted.empty();
  return plan;
}

std::string topic_owner(const std::vector<data_product>& claimants) {
  const data_product* best = nullptr;
  for (const auto& c : claimants) {
    if (best == nullptr || std::tie(c.meta.creation_timestamp, c.meta.ns, c.meta.name) <
                               std::tie(best->meta.creation_timestamp, best->meta.ns, best->meta.name)) {
      best = &c;
    }
  }
  return best == nullptr ? "" : best->meta.key();
}

// ---- Sidecar --------------------------------------------------------------------------------

bool sidecar_plan::participates() const {
  return !owner_gateways.empty() ||
         std::any_of(subscribes.begin(), subscribes.end(), [](const auto& r) { return r.policy.needs_gateway(); });
}

std::string sidecar_config_map_name(const workload_id& w) {
  return "datashare-sidecar-" + workload_suffix(w);
}
std::string participant_service_name(const workload_id& w) {
  return "datashare-tx-" + workload_suffix(w);
}
std::string gateway_name(const data_product& p) {
  return "datashare-gateway-" + p.meta.name;
}

std::string gateway_url(const data_product& p, const sidecar_settings& s) {
  return "http://" + gateway_name(p) + "." + p.meta.ns + ".svc:" + std::to_string(s.gateway_port);
}

bool product_needs_gateway(const data_product& p, const std::vector<resolved_policy>& policies_of_product) {
  if (p.write_path.empty() || p.endpoint_service.empty()) return false;  // nothing to apply changes through
  return std::any_of(policies_of_product.begin(), policies_of_product.end(),
                     [](const resolved_policy& r) { return r.policy.needs_gateway(); });
}

std::string render_sidecar_config(const sidecar_plan& plan, const sidecar_settings& s) {
  YAML::Emitter y;
  y << YAML::Comment("Rendered by datashare-operator for " + plan.workload.kind + " " + plan.workload.ns + "/" +
                     plan.workload.name + "; do not edit (sidecar/config/README.md)");
  y << YAML::BeginMap;
  y << YAML::Key << "version" << YAML::Value << 1;
  y << YAML::Key << "dataDir" << YAML::Value << "/var/lib/datashare";
  y << YAML::Key << "kafka" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "bootstrapServers" << YAML::Value << s.kafka_bootstrap;
  y << YAML::Key << "clientId" << YAML::Value << plan.workload.ns + "." + plan.workload.name;
  if (s.kafka_protocol != "PLAINTEXT") {
    y << YAML::Key << "security" << YAML::Value << YAML::BeginMap;
    y << YAML::Key << "protocol" << YAML::Value << s.kafka_protocol;
    if (s.kafka_protocol == "SSL" || s.kafka_protocol == "SASL_SSL") {
      y << YAML::Key << "tls" << YAML::Value << YAML::BeginMap << YAML::Key << "caFile" << YAML::Value
        << "/etc/datashare/kafka/ca.crt";
      if (s.kafka_client_certificate) {
        y << YAML::Key << "certFile" << YAML::Value << "/etc/datashare/kafka/tls.crt";
        y << YAML::Key << "keyFile" << YAML::Value << "/etc/datashare/kafka/tls.key";
      }
      y << YAML::EndMap;
    }
    if (s.kafka_protocol.starts_with("SASL")) {
      y << YAML::Key << "sasl" << YAML::Value << YAML::BeginMap;
      y << YAML::Key << "mechanism" << YAML::Value << s.kafka_sasl_mechanism;
      y << YAML::Key << "username" << YAML::Value << s.kafka_sasl_username;
      y << YAML::Key << "passwordFile" << YAML::Value << "/etc/datashare/kafka/sasl.password";
      y << YAML::EndMap;
    }
    y << YAML::EndMap;
  }
  y << YAML::EndMap;

  y << YAML::Key << "listen" << YAML::Value << YAML::BeginMap;
  emit_endpoint(y, "data", "127.0.0.1", s.data_port);
  emit_endpoint(y, "admin", "0.0.0.0", s.admin_port);
  if (plan.participates()) emit_endpoint(y, "participant", "0.0.0.0", s.participant_port);
  if (s.io_threads != 1) y << YAML::Key << "threads" << YAML::Value << s.io_threads;
  if (s.busy_poll_micros != 0) y << YAML::Key << "busyPollMicros" << YAML::Value << s.busy_poll_micros;
  y << YAML::EndMap;

  auto publishes = sorted_by(plan.publishes, [](const data_product& p) { return p.meta.key(); });
  y << YAML::Key << "publish" << YAML::Value << YAML::BeginSeq;
  for (const auto& p : publishes) {
    y << YAML::BeginMap;
    emit_product(y, p);
    y << YAML::Key << "topic" << YAML::Value << p.topic.name;
    y << YAML::Key << "outbox" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "maxEntries"
      << YAML::Value << p.outbox_max_entries << YAML::EndMap;
    y << YAML::EndMap;
  }
  y << YAML::EndSeq;

  auto subscribes = sorted_by(plan.subscribes, [](const resolved_policy& r) { return r.policy.meta.key(); });
  y << YAML::Key << "subscribe" << YAML::Value << YAML::BeginSeq;
  for (const auto& [pol, prod] : subscribes) {
    y << YAML::BeginMap;
    y << YAML::Key << "policy" << YAML::Value << pol.meta.name;
    y << YAML::Key << "namespace" << YAML::Value << pol.meta.ns;
    emit_product(y, prod);
    y << YAML::Key << "topic" << YAML::Value << prod.topic.name;
    y << YAML::Key << "group" << YAML::Value << pol.consumer_group();
    y << YAML::Key << "mode" << YAML::Value << pol.mode;
    emit_strings(y, "fields", pol.fields);
    emit_strings(y, "syncFields", pol.sync_fields);
    if (!pol.sync_fields.empty()) {
      y << YAML::Key << "owner" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "url" << YAML::Value
        << prod.owner_url() << YAML::Key << "readPath" << YAML::Value << prod.read_path << YAML::EndMap;
    }
    y << YAML::Key << "maxLag" << YAML::Value << pol.max_lag;
    y << YAML::Key << "store" << YAML::Value << pol.store;
    // Only when asked for: existing policies render as before (same hash, no rollout).
    // The sidecar's default is auto: rendered only otherwise. (A policy stored while the default was
    // none keeps it, and its sidecar's config now spells it out.)
    if (pol.read_index != "auto") y << YAML::Key << "readIndex" << YAML::Value << pol.read_index;
    y << YAML::Key << "maxEventBytes" << YAML::Value << pol.max_event_bytes;
    // Only when set: existing policies render as before (same hash, no rollout).
    if (pol.apply_workers > 0) y << YAML::Key << "applyWorkers" << YAML::Value << pol.apply_workers;
    if (!pol.sync_fields.empty()) {
      const auto& c = pol.sync;
      y << YAML::Key << "sync" << YAML::Value << YAML::BeginMap;
      y << YAML::Key << "timeout" << YAML::Value << c.timeout;
      y << YAML::Key << "maxInFlight" << YAML::Value << c.max_in_flight;
      y << YAML::Key << "retries" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "attempts"
        << YAML::Value << c.retry_attempts << YAML::Key << "backoff" << YAML::Value << c.retry_backoff << YAML::EndMap;
      y << YAML::Key << "circuitBreaker" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key
        << "consecutiveFailures" << YAML::Value << c.breaker_consecutive_failures << YAML::Key << "openFor"
        << YAML::Value << c.breaker_open_for << YAML::EndMap;
      y << YAML::Key << "cache" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "ttl" << YAML::Value
        << c.cache_ttl << YAML::Key << "maxEntries" << YAML::Value << c.cache_max_entries << YAML::Key
        << "serveStaleOnError" << YAML::Value << c.serve_stale_on_error << YAML::EndMap;
      y << YAML::EndMap;
    }
    y << YAML::EndMap;
  }
  y << YAML::EndSeq;

  y << YAML::Key << "participate" << YAML::Value << YAML::BeginSeq;
  for (const auto& p : publishes) {
    if (std::find(plan.owner_gateways.begin(), plan.owner_gateways.end(), p.meta.key()) == plan.owner_gateways.end())
      continue;
    y << YAML::BeginMap;
    y << YAML::Key << "product" << YAML::Value << p.meta.name;
    y << YAML::Key << "namespace" << YAML::Value << p.meta.ns;
    y << YAML::Key << "role" << YAML::Value << "owner";
    y << YAML::Key << "coordinatorUrl" << YAML::Value << gateway_url(p, s);
    y << YAML::Key << "lockTimeout" << YAML::Value << "10s";
    y << YAML::Key << "owner" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "url" << YAML::Value
      << p.owner_url() << YAML::Key << "writePath" << YAML::Value << p.write_path << YAML::EndMap;
    y << YAML::EndMap;
  }
  for (const auto& [pol, prod] : subscribes) {
    if (!pol.needs_gateway()) continue;
    y << YAML::BeginMap;
    y << YAML::Key << "product" << YAML::Value << prod.meta.name;
    y << YAML::Key << "namespace" << YAML::Value << prod.meta.ns;
    y << YAML::Key << "role" << YAML::Value << "copy";
    y << YAML::Key << "coordinatorUrl" << YAML::Value << gateway_url(prod, s);
    y << YAML::Key << "lockTimeout" << YAML::Value << "10s";
    y << YAML::Key << "policy" << YAML::Value << pol.meta.name;
    y << YAML::EndMap;
  }
  y << YAML::EndSeq;
  y << YAML::EndMap;
  return std::string(y.c_str()) + "\n";
}

std::string config_hash(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

json owner_references(const sidecar_plan& plan) {
  json refs = json::array();
  for (const auto& p : sorted_by(plan.publishes, [](const data_product& p) { return p.meta.key(); }))
    refs.push_back(owner_ref(p.meta, "DataProduct", false));
  for (const auto& r : sorted_by(plan.subscribes, [](const resolved_policy& r) { return r.policy.meta.key(); }))
    refs.push_back(owner_ref(r.policy.meta, "DataSharingPolicy", false));
  return refs;
}

json sidecar_config_map(const sidecar_plan& plan, const std::string& config_text) {
  json labels = labels_for("sidecar-config");
  labels["datashare.io/workload"] = plan.workload.name;
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata",
           {{"name", sidecar_config_map_name(plan.workload)},
            {"namespace", plan.workload.ns},
            {"labels", labels},
            {"ownerReferences", owner_references(plan)}}},
          {"data", {{"sidecar.yaml", config_text}}}};
}

json sidecar_apply_intent(const sidecar_plan& plan, const std::string& hash, const sidecar_settings& s) {
  json ports = json::array({{{"name", "ds-admin"}, {"containerPort", s.admin_port}, {"protocol", "TCP"}}});
  if (plan.participates())
    ports.push_back({{"name", "ds-tx"}, {"containerPort", s.participant_port}, {"protocol", "TCP"}});
  auto probe = [&](const char* path, int period, int failures) {
    return json{
        {"httpGet", {{"path", path}, {"port", "ds-admin"}}}, {"periodSeconds", period}, {"failureThreshold", failures}};
  };
  json mounts = json::array({{{"name", "datashare-config"}, {"mountPath", "/etc/datashare"}, {"readOnly", true}},
                             {{"name", "datashare-data"}, {"mountPath", "/var/lib/datashare"}}});
  json volumes =
      json::array({{{"name", "datashare-config"}, {"configMap", {{"name", sidecar_config_map_name(plan.workload)}}}},
                   {{"name", "datashare-data"}, {"emptyDir", json::object()}}});
  if (s.kafka_protocol != "PLAINTEXT") {
    mounts.push_back({{"name", "datashare-kafka"}, {"mountPath", "/etc/datashare/kafka"}, {"readOnly", true}});
    volumes.push_back({{"name", "datashare-kafka"}, {"secret", {{"secretName", s.kafka_secret_name}}}});
  }
  json container = {{"name", kSidecarContainer},
                    {"image", s.image},
                    {"restartPolicy", "Always"},  // a native sidecar: starts before, stops after the app
                    {"args", {"--config", "/etc/datashare/sidecar.yaml"}},
                    {"ports", ports},
                    {"startupProbe", probe("/healthz", 1, 60)},
                    {"livenessProbe", probe("/healthz", 10, 3)},
                    {"readinessProbe", probe("/readyz", 5, 1)},
                    {"resources",
                     {{"requests", {{"cpu", s.cpu_request}, {"memory", s.memory_request}}},
                      {"limits", {{"memory", s.memory_limit}}}}},
                    {"securityContext",
                     {{"runAsNonRoot", true},
                      {"readOnlyRootFilesystem", true},
                      {"allowPrivilegeEscalation", false},
                      {"capabilities", {{"drop", {"ALL"}}}}}},
                    {"volumeMounts", mounts}};
  return {{"apiVersion", "apps/v1"},
          {"kind", plan.workload.kind},
          {"metadata", {{"name", plan.workload.name}, {"namespace", plan.workload.ns}}},
          {"spec",
           {{"template",
             {{"metadata", {{"annotations", {{kConfigHashAnnotation, hash}}}}},
              {"spec", {{"initContainers", {container}}, {"volumes", volumes}}}}}}}};
}

json remove_sidecar_intent(const workload_id& w) {
  return {{"apiVersion", "apps/v1"}, {"kind", w.kind}, {"metadata", {{"name", w.name}, {"namespace", w.ns}}}};
}

json participant_service(const sidecar_plan& plan, const json& pod_selector, const sidecar_settings& s) {
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata",
           {{"name", participant_service_name(plan.workload)},
            {"namespace", plan.workload.ns},
            {"labels", labels_for("participant")},
            {"ownerReferences", owner_references(plan)}}},
          {"spec",
           {{"clusterIP", "None"},  // headless: the coordinator addresses pods
            {"publishNotReadyAddresses", true},
            {"selector", pod_selector},
            {"ports", {{{"name", "ds-tx"}, {"port", s.participant_port}, {"targetPort", "ds-tx"}}}}}}};
}

// ---- Gateway --------------------------------------------------------------------------------

std::string render_gateway_config(const data_product& product, const std::vector<resolved_policy>& copies,
                                  const sidecar_settings& s) {
  YAML::Emitter y;
  y << YAML::Comment("Rendered by datashare-operator for DataProduct " + product.meta.key() +
                     "; do not edit (gateway/README.md)");
  y << YAML::BeginMap;
  y << YAML::Key << "version" << YAML::Value << 1;
  emit_product(y, product);
  y << YAML::Key << "dataDir" << YAML::Value << "/var/lib/datashare-gateway";
  y << YAML::Key << "listen" << YAML::Value << YAML::BeginMap;
  emit_endpoint(y, "data", "0.0.0.0", s.gateway_port);
  emit_endpoint(y, "admin", "0.0.0.0", s.gateway_admin_port);
  y << YAML::EndMap;
  y << YAML::Key << "transaction" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "timeout"
    << YAML::Value << "5s" << YAML::EndMap;
  y << YAML::Key << "participants" << YAML::Value << YAML::BeginSeq;
  workload_id owner{product.meta.ns, product.owner.kind, product.owner.name};
  auto url = [&](const workload_id& w) {
    return "http://" + participant_service_name(w) + "." + w.ns + ".svc:" + std::to_string(s.participant_port);
  };
  y << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << "owner" << YAML::Key << "role"
    << YAML::Value << "owner" << YAML::Key << "url" << YAML::Value << url(owner) << YAML::EndMap;
  for (const auto& r : sorted_by(copies, [](const resolved_policy& r) { return r.policy.meta.key(); })) {
    if (!r.policy.needs_gateway()) continue;
    workload_id w{r.policy.meta.ns, r.policy.consumer.kind, r.policy.consumer.name};
    y << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << r.policy.meta.key() << YAML::Key
      << "role" << YAML::Value << "copy" << YAML::Key << "url" << YAML::Value << url(w) << YAML::EndMap;
  }
  y << YAML::EndSeq << YAML::EndMap;
  return std::string(y.c_str()) + "\n";
}

std::vector<json> gateway_objects(const data_product& product, const std::vector<resolved_policy>& copies,
                                  const sidecar_settings& s) {
  const std::string name = gateway_name(product);
  const std::string text = render_gateway_config(product, copies, s);
  json owner = json::array({owner_ref(product.meta, "DataProduct", true)});
  json labels = labels_for("gateway");
  labels["app.kubernetes.io/name"] = "datashare-gateway";
  labels["app.kubernetes.io/instance"] = name;
  json selector = {{"app.kubernetes.io/name", "datashare-gateway"}, {"app.kubernetes.io/instance", name}};
  auto meta = [&](const std::string& n) {
    return json{{"name", n}, {"namespace", product.meta.ns}, {"labels", labels}, {"ownerReferences", owner}};
  };
  json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", meta(name)}, {"data", {{"gateway.yaml", text}}}};
  json svc = {{"apiVersion", "v1"},
              {"kind", "Service"},
              {"metadata", meta(name)},
              {"spec",
               {{"selector", selector},
                {"ports",
                 {{{"name", "http"}, {"port", s.gateway_port}, {"targetPort", "http"}},
                  {{"name", "admin"}, {"port", s.gateway_admin_port}, {"targetPort", "admin"}}}}}}};
  json pvc = {{"apiVersion", "v1"},
              {"kind", "PersistentVolumeClaim"},
              {"metadata", meta(name + "-log")},
              {"spec", {{"accessModes", {"ReadWriteOnce"}}, {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}};
  auto probe = [](const char* path) {
    return json{{"httpGet", {{"path", path}, {"port", "admin"}}}, {"periodSeconds", 5}};
  };
  json container = {
      {"name", "gateway"},
      {"image", s.gateway_image},
      {"args", {"--config", "/etc/datashare/gateway.yaml"}},
      {"ports",
       {{{"name", "http"}, {"containerPort", s.gateway_port}},
        {{"name", "admin"}, {"containerPort", s.gateway_admin_port}}}},
      {"livenessProbe", probe("/healthz")},
      {"readinessProbe", probe("/readyz")},
      {"resources", {{"requests", {{"cpu", "100m"}, {"memory", "64Mi"}}}, {"limits", {{"memory", "256Mi"}}}}},
      {"securityContext",
       {{"runAsNonRoot", true},
        {"readOnlyRootFilesystem", true},
        {"allowPrivilegeEscalation", false},
        {"capabilities", {{"drop", {"ALL"}}}}}},
      {"volumeMounts",
       {{{"name", "config"}, {"mountPath", "/etc/datashare"}, {"readOnly", true}},
        {{"name", "log"}, {"mountPath", "/var/lib/datashare-gateway"}}}}};
  json deploy = {{"apiVersion", "apps/v1"},
                 {"kind", "Deployment"},
                 {"metadata", meta(name)},
                 {"spec",
                  {{"replicas", 1},
                   {"strategy", {{"type", "Recreate"}}},  // one coordinator owns the log at a time
                   {"selector", {{"matchLabels", selector}}},
                   {"template",
                    {{"metadata", {{"labels", labels}, {"annotations", {{kConfigHashAnnotation, config_hash(text)}}}}},
                     {"spec",
                      {{"containers", {container}},
                       {"volumes",
                        {{{"name", "config"}, {"configMap", {{"name", name}}}},
                         {{"name", "log"}, {"persistentVolumeClaim", {{"claimName", name + "-log"}}}}}}}}}}}}};
  return {cm, svc, pvc, deploy};
}

}  // namespace datashare::controllers
