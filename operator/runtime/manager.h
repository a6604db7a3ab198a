#pragma once
// The manager (controller-runtime's Manager): owns the informers and controllers of one
// process and their lifecycle — caches first, controllers once the caches are in sync (and, with
// leader election, once this process leads), /healthz and /readyz, /metrics, and a graceful
// stop: intake stops, in-flight reconciles finish within a deadline, the Lease is released.

#include <prometheus/registry.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "operator/kube/client.h"
#include "operator/runtime/controller.h"
#include "operator/runtime/informer.h"

namespace datashare::sidecar::http {
class server;
}

namespace datashare::runtime {

struct manager_options {
  // "host:port"; ":port" binds every interface (what Prometheus in a cluster needs); "0" disables.
  std::string metrics_bind_address = ":8080";
  std::string health_probe_bind_address = ":8081";
  std::chrono::seconds graceful_shutdown_timeout{30};
  std::chrono::seconds cache_sync_timeout{120};
  // Leadership: called from run() after the caches are in sync. It must block until leadership is
  // acquired (return true) or `stop` is requested (return false), and call `lost` if leadership
  // is lost later. Null: no leader election, this process always leads.
  std::function<bool(std::stop_token stop, std::function<void()> lost)> acquire_leadership;
  // Called at the end of a graceful stop, after the controllers have stopped (release the Lease).
  std::function<void()> release_leadership;
};

// run() is called once, from one thread; request_stop() and the accessors from any thread.
// Informers and controllers are added before run() and owned by the manager.
class manager {
 public:
  manager(std::shared_ptr<prometheus::Registry> registry, manager_options options);
  ~manager();

  manager(const manager&) = delete;
  manager& operator=(const manager&) = delete;

  informer& add_informer(std::unique_ptr<informer> inf);
  controller& add_controller(std::unique_ptr<controller> c);
  // Extra readiness checks (all must pass for /readyz to answer 200).
  void add_readiness_check(std::string name, std::function<bool()> check);

  prometheus::Registry& registry() { return *registry_; }

  // Serves probes and metrics, starts the informers, waits for their caches, waits for
  // leadership, starts the controllers, and blocks until request_stop() (or lost leadership).
  // Returns 0 after a clean stop, 1 when the caches never synced or leadership was lost.
  int run();
  void request_stop();

  // Where the servers listen (after run() started them), for tests that bind port 0.
  uint16_t metrics_port() const { return metrics_port_.load(); }
  uint16_t health_port() const { return health_port_.load(); }
  bool ready() const;
  bool leading() const { return leading_.load(); }

 private:
  void serve();
  void shut_down();

  std::shared_ptr<prometheus::Registry> registry_;
  manager_options options_;
  std::vector<std::unique_ptr<informer>> informers_;
  std::vector<std::unique_ptr<controller>> controllers_;
  std::vector<std::pair<std::string, std::function<bool()>>> checks_;
  std::unique_ptr<sidecar::http::server> server_;
  std::atomic<uint16_t> metrics_port_{0};
  std::atomic<uint16_t> health_port_{0};
  std::atomic<bool> leading_{false};
  std::atomic<bool> lost_leadership_{false};
  std::stop_source stop_;
  std::mutex mu_;
  std::condition_variable cv_;
};

// Blocks SIGTERM and SIGINT in the calling thread (call it first in main, before any thread is
// started, so every thread inherits the mask) and starts a thread that calls `on_signal` once
// when either arrives. A second signal exits the process at once, as kubectl users expect.
void stop_on_signals(std::function<void()> on_signal);

// The hook kube::client_options::on_request wants, counting rest_client_requests_total{code,method,host}.
std::function<void(const std::string& method, int code)> rest_client_metrics(prometheus::Registry& registry,
                                                                             const std::string& host);

}  // namespace datashare::runtime
