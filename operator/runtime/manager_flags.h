#pragma once
// The flags every controller binary of this project takes, named as controller-runtime's
// operators name them, and the wiring they imply: logging, the API client (with
// rest_client_requests_total), the metrics registry, leader election on a Lease (with
// leader_election_master_status), and the manager.

#include <prometheus/registry.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/flags.h"
#include "operator/kube/client.h"
#include "operator/runtime/leader_election.h"
#include "operator/runtime/manager.h"

namespace datashare::runtime {

struct manager_flags {
  std::string kubeconfig;  // empty: $KUBECONFIG, in-cluster, ~/.kube/config
  std::string context;
  bool leader_elect = false;
  std::string leader_election_id = "datashare-operator";
  std::string leader_election_namespace;  // empty: the in-cluster namespace, else "default"
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
  std::string metrics_bind_address = ":8080";
  std::string health_probe_bind_address = ":8081";
  std::chrono::milliseconds graceful_shutdown_timeout{30000};
  std::string log_level = "info";     // --zap-log-level: debug|info|warn|error or a number
  std::string log_format = "logfmt";  // logfmt | json

  void register_on(flag_set& flags);
  // Problems the flags cannot catch one by one (durations that contradict each other, ...).
  std::vector<std::string> validate() const;
};

// What a binary runs: keep it alive while the manager runs.
struct manager_setup {
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<kube::client> client;
  // Leader election's own client: one attempt per request and a timeout of half the renew
  // deadline, so a hung request cannot outlast the lease (the shared client may wait 30 s and
  // retry). Null without --leader-elect, like `leadership`.
  std::unique_ptr<kube::client> election_client;
  std::unique_ptr<elected_leadership> leadership;
  std::unique_ptr<manager> mgr;
};

// Applies the log flags, loads the kube config (throws kube::config_error naming the file and
// field), builds the client, the registry and the manager, and wires leader election.
manager_setup setup_manager(const manager_flags& flags);

}  // namespace datashare::runtime
