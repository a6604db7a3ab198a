#include "operator/runtime/manager_flags.h"

#include <prometheus/gauge.h>

#include <fstream>

#include "common/log.h"
#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"

namespace datashare::runtime {

void manager_flags::register_on(flag_set& f) {
  f.add("kubeconfig", &kubeconfig, "path to a kubeconfig; empty: $KUBECONFIG, in-cluster, ~/.kube/config");
  f.add("context", &context, "kubeconfig context to use instead of current-context");
  f.add("leader-elect", &leader_elect, "elect a leader on a Lease so that one replica reconciles at a time");
  f.add("leader-election-id", &leader_election_id, "name of the Lease");
  f.add("leader-election-namespace", &leader_election_namespace,
        "namespace of the Lease; empty: the pod's namespace in a cluster, else default");
  f.add("leader-elect-lease-duration", &lease_duration, "how long a lease holds without renewal");
  f.add("leader-elect-renew-deadline", &renew_deadline, "how long the leader tries to renew before it steps down");
  f.add("leader-elect-retry-period", &retry_period, "how often candidates try to acquire or renew");
  f.add("metrics-bind-address", &metrics_bind_address, "host:port for /metrics; 0 disables");
  f.add("health-probe-bind-address", &health_probe_bind_address, "host:port for /healthz and /readyz; 0 disables");
  f.add("graceful-shutdown-timeout", &graceful_shutdown_timeout, "how long in-flight reconciles may finish on SIGTERM");
  f.add("zap-log-level", &log_level, "debug, info, warn, error, or a verbosity number");
  f.add("log-format", &log_format, "logfmt or json");
}

std::vector<std::string> manager_flags::validate() const {
  std::vector<std::string> problems;
  log::level l{};
  if (!log::parse_level(log_level, l)) problems.push_back("--zap-log-level: not a level: " + log_level);
  if (log_format != "logfmt" && log_format != "json")
    problems.push_back("--log-format: logfmt or json, not " + log_format);
  if (leader_elect) {
    if (renew_deadline >= lease_duration) {
      problems.push_back("--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration");
    }
    if (retry_period >= renew_deadline) {
      problems.push_back("--leader-elect-retry-period must be shorter than --leader-elect-renew-deadline");
    }
    if (leader_election_id.empty()) problems.push_back("--leader-election-id: must not be empty");
  }
  return problems;
}

namespace {

std::string in_cluster_namespace() {
  std::ifstream in("/var/run/secrets/kubernetes.io/serviceaccount/namespace");
  std::string ns;
  if (in) std::getline(in, ns);
  return ns.empty() ? "default" : ns;
}

}  // namespace

manager_setup setup_manager(const manager_flags& flags) {
  log::level l = log::level::info;
  log::parse_level(flags.log_level, l);
  log::set_level(l);
  log::set_format(flags.log_format == "json" ? log::format::json : log::format::logfmt);

  manager_setup s;
  s.registry = std::make_shared<prometheus::Registry>();
  kube::rest_config cfg =
      kube::resolve_config(flags.kubeconfig.empty() ? std::nullopt : std::optional<std::string>(flags.kubeconfig),
                           flags.context.empty() ? std::nullopt : std::optional<std::string>(flags.context));
  log::info("API server", {{"server", cfg.server}, {"source", cfg.source}});
  s.client =
      std::make_unique<kube::client>(std::make_shared<kube::cpprest_transport>(cfg),
                                     kube::client_options{.on_request = rest_client_metrics(*s.registry, cfg.server)});

  manager_options options{
      .metrics_bind_address = flags.metrics_bind_address,
      .health_probe_bind_address = flags.health_probe_bind_address,
      .graceful_shutdown_timeout = std::chrono::duration_cast<std::chrono::seconds>(flags.graceful_shutdown_timeout)};
  if (flags.leader_elect) {
    auto& gauge = prometheus::BuildGauge()
                      .Name("leader_election_master_status")
                      .Help(
                          "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 "
                          "indicates master.")
                      .Register(*s.registry)
                      .Add({{"name", flags.leader_election_id}});
    leader_election_config election{.lease_namespace = flags.leader_election_namespace.empty()
                                                           ? in_cluster_namespace()
                                                           : flags.leader_election_namespace,
                                    .lease_name = flags.leader_election_id,
                                    .lease_duration = flags.lease_duration,
                                    .renew_deadline = flags.renew_deadline,
                                    .retry_period = flags.retry_period,
                                    .on_master_status = [&gauge](bool leading) { gauge.Set(leading ? 1 : 0); },
                                    .on_error =
                                        [](const std::string& what, const std::exception& e) {
                                          log::warn("leader election", {{"what", what}, {"error", e.what()}});
                                        }};
    auto timeout =
        std::max(std::chrono::seconds(1), std::chrono::duration_cast<std::chrono::seconds>(flags.renew_deadline / 2));
    s.election_client = std::make_unique<kube::client>(std::make_shared<kube::cpprest_transport>(cfg, timeout),
                                                       kube::client_options{.max_attempts = 1});
    s.leadership = std::make_unique<elected_leadership>(*s.election_client, std::move(election));
    elected_leadership* leadership = s.leadership.get();
    options.acquire_leadership = [leadership](std::stop_token stop, std::function<void()> lost) {
      return leadership->acquire(stop, std::move(lost));
    };
    options.release_leadership = [leadership] { leadership->release(); };
  }
  s.mgr = std::make_unique<manager>(s.registry, std::move(options));
  return s;
}

}  // namespace datashare::runtime
