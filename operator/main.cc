// datashare-operator: the controller manager of datashare. The runtime's standard flags
// (controller-runtime names: --kubeconfig, --leader-elect, --metrics-bind-address, ...) plus the
// operator's own: where Kafka is and how to reach it, which images to inject, sidecar resources,
// and how often to look at topics and lag. See controllers/README.md.

#include <unistd.h>

#include <atomic>
#include <iostream>

#include "common/base64.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/memory.h"
#include "controllers/kafka/topic_admin.h"
#include "controllers/reconcile/operator.h"
#include "operator/kube/error.h"
#include "operator/kube/label_selector.h"
#include "operator/runtime/events.h"
#include "operator/runtime/manager_flags.h"

namespace {

std::atomic<datashare::runtime::manager*> g_manager{nullptr};

// Kafka security from a Secret (keys: protocol, ca.crt, tls.crt, tls.key, sasl.mechanism,
// sasl.username, sasl.password). Values become librdkafka properties; none is logged.
void load_kafka_secret(datashare::kube::client& client, const std::string& ref,
                       datashare::controllers::kafka_connection& conn,
                       datashare::controllers::sidecar_settings& sidecar) {
  using namespace datashare;
  auto slash = ref.find('/');
  if (slash == std::string::npos) throw std::invalid_argument("--kafka-security-secret: expected <namespace>/<name>");
  kube::json secret = client.get(kube::resources::secrets, ref.substr(0, slash), ref.substr(slash + 1));
  auto value = [&](const char* key) -> std::string {
    if (!secret.contains("data") || !secret["data"].contains(key)) return "";
    auto out = base64_decode(secret["data"][key].get<std::string>());
    if (!out) throw std::invalid_argument("secret " + ref + ": key " + key + " is not base64");
    return *out;
  };
  std::string protocol = value("protocol");
  if (protocol.empty()) protocol = "PLAINTEXT";
  conn.properties.emplace_back("security.protocol", protocol);
  sidecar.kafka_protocol = protocol;
  if (auto ca = value("ca.crt"); !ca.empty()) conn.properties.emplace_back("ssl.ca.pem", ca);
  auto cert = value("tls.crt");
  auto key = value("tls.key");
  if (!cert.empty()) conn.properties.emplace_back("ssl.certificate.pem", cert);
  if (!key.empty()) conn.properties.emplace_back("ssl.key.pem", key);
  // Sidecars present the same client certificate, from the files of their mounted Secret.
  sidecar.kafka_client_certificate = !cert.empty() && !key.empty();
  if (auto mech = value("sasl.mechanism"); !mech.empty()) {
    conn.properties.emplace_back("sasl.mechanisms", mech);
    sidecar.kafka_sasl_mechanism = mech;
  }
  if (auto user = value("sasl.username"); !user.empty()) {
    conn.properties.emplace_back("sasl.username", user);
    sidecar.kafka_sasl_username = user;
  }
  if (auto pw = value("sasl.password"); !pw.empty()) conn.properties.emplace_back("sasl.password", pw);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace datashare;
  limit_malloc_arenas();
  runtime::stop_on_signals([] {
    if (auto* m = g_manager.load())
      m->request_stop();
    else
      std::_Exit(0);
  });

  runtime::manager_flags flags;
  controllers::operator_options options;
  std::string kafka_bootstrap;
  std::string kafka_secret;
  std::string sidecar_image = options.sidecar.image;
  std::string gateway_image = options.sidecar.gateway_image;
  flag_set set("datashare-operator");
  flags.register_on(set);
  set.add("kafka-bootstrap", &kafka_bootstrap, "Kafka bootstrap servers (host:port[,host:port]); required");
  set.add(
      "kafka-security-secret", &kafka_secret,
      "<namespace>/<name> of a Secret with Kafka security settings (protocol, ca.crt, tls.crt, tls.key, "
      "sasl.mechanism, sasl.username, sasl.password); sidecars mount the Secret 'datashare-kafka' of their namespace");
  set.add("sidecar-image", &options.sidecar.image, "image of the injected sidecar");
  set.add("gateway-image", &options.sidecar.gateway_image, "image of the gateway coordinators");
  set.add("sidecar-cpu-request", &options.sidecar.cpu_request, "CPU request of each injected sidecar");
  set.add("sidecar-memory-request", &options.sidecar.memory_request, "memory request of each injected sidecar");
  set.add("sidecar-memory-limit", &options.sidecar.memory_limit, "memory limit of each injected sidecar");
  set.add("sidecar-io-threads", &options.sidecar.io_threads,
          "HTTP I/O threads of each injected sidecar (1-64; more only when its application reads from many threads)");
  set.add("sidecar-busy-poll-micros", &options.sidecar.busy_poll_micros,
          "microseconds an injected sidecar's I/O thread keeps polling after a request before it sleeps (0-1000; "
          "0 = off): lower sync-read latency for more CPU");
  set.add("watch-namespace", &options.watch_namespace, "only this namespace (default: all namespaces)");
  set.add("resource-selector", &options.resource_selector,
          "label selector of the DataProducts and DataSharingPolicies to serve, e.g. datashare.io/shard=a; "
          "empty: all (a product and its policies must match alike)");
  set.add("lag-poll-interval", &options.lag_interval, "how often consumer-group lag is measured");
  set.add("topic-resync-interval", &options.topic_resync, "how often topics are compared with their spec (drift)");
  set.add("workers", &options.workers, "concurrent reconciles per controller");
  auto problems = set.parse(argc, argv);
  auto more = flags.validate();
  problems.insert(problems.end(), more.begin(), more.end());
  if (kafka_bootstrap.empty()) problems.emplace_back("--kafka-bootstrap is required");
  if (options.workers < 1 || options.workers > 64) problems.emplace_back("--workers: must be between 1 and 64");
  if (options.sidecar.io_threads < 1 || options.sidecar.io_threads > 64)
    problems.emplace_back("--sidecar-io-threads: must be between 1 and 64");
  if (options.sidecar.busy_poll_micros < 0 || options.sidecar.busy_poll_micros > 1000)
    problems.emplace_back("--sidecar-busy-poll-micros: must be between 0 and 1000");
  if (auto problem = kube::label_selector_problem(options.resource_selector))
    problems.emplace_back("--resource-selector: " + *problem);
  if (options.lag_interval < std::chrono::seconds(1)) problems.emplace_back("--lag-poll-interval: at least 1s");
  if (options.topic_resync < std::chrono::seconds(1)) problems.emplace_back("--topic-resync-interval: at least 1s");
  if (auto code = set.exit_code(problems)) return *code;
  options.sidecar.kafka_bootstrap = kafka_bootstrap;

  try {
    runtime::manager_setup s = runtime::setup_manager(flags);
    controllers::kafka_connection conn{.bootstrap = kafka_bootstrap};
    if (!kafka_secret.empty()) load_kafka_secret(*s.client, kafka_secret, conn, options.sidecar);
    auto kafka = controllers::make_rdkafka_admin(conn);
    runtime::event_recorder events(*s.client,
                                   {.reporting_controller = "datashare.io/operator", .reporting_instance = [] {
                                      char host[256] = {};
                                      gethostname(host, sizeof host - 1);
                                      return std::string(host);
                                    }()});
    controllers::datashare_operator op(*s.client, *kafka, events, s.mgr->registry(), options);
    op.register_with(*s.mgr);
    g_manager = s.mgr.get();
    log::info("datashare-operator starting",
              {{"kafka", kafka_bootstrap},
               {"sidecar_image", options.sidecar.image},
               {"namespace", options.watch_namespace.empty() ? "(all)" : options.watch_namespace},
               {"resources", options.resource_selector.empty() ? "(all)" : options.resource_selector}});
    int code = s.mgr->run();
    g_manager = nullptr;
    events.flush(std::chrono::seconds(2));
    log::info("datashare-operator stopped", {{"code", std::to_string(code)}});
    return code;
  } catch (const std::exception& e) {
    log::error("datashare-operator failed", {{"error", e.what()}});
    return 1;
  }
}
