// leader_election_probe: leader election on one Lease, reporting each event as a line on stdout,
// for the integration tests (and for trying leader election by hand against a cluster):
//
//   identity <id>      at start
//   new-leader <id>    the holder changed, as this process saw it
//   leading <id>       this process now leads
//   stopped            this process no longer leads
//   exit               about to exit 0
//
// SIGTERM or SIGINT stops it, releasing the lease if it leads. It also exits by itself after
// losing leadership, as a controller manager does.
//
//   leader_election_probe --namespace=NS --name=LEASE [--identity=ID] [--kubeconfig=PATH]
//       [--lease-duration=15s] [--renew-deadline=10s] [--retry-period=2s]

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"
#include "operator/runtime/leader_election.h"

namespace {

using namespace datashare;

std::mutex out_mu;

void say(const std::string& line) {
  std::lock_guard lock(out_mu);
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

// "3s", "500ms", "1.5s".
std::chrono::milliseconds parse_duration(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    const double n = std::stod(v, &used);
    const std::string unit = v.substr(used);
    if (unit == "ms") return std::chrono::milliseconds(static_cast<int64_t>(n));
    if (unit == "s") return std::chrono::milliseconds(static_cast<int64_t>(n * 1000));
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(flag + ": expected a duration like 3s or 500ms, got \"" + v + "\"");
}

int run(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const auto eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos) throw std::invalid_argument("bad argument: " + a);
    flags[a.substr(2, eq - 2)] = a.substr(eq + 1);
  }
  auto flag = [&](const std::string& name, const std::string& fallback = "") {
    auto it = flags.find(name);
    return it == flags.end() ? fallback : it->second;
  };

  runtime::leader_election_config config;
  config.lease_namespace = flag("namespace");
  config.lease_name = flag("name");
  config.identity = flag("identity");
  config.lease_duration = parse_duration("--lease-duration", flag("lease-duration", "15s"));
  config.renew_deadline = parse_duration("--renew-deadline", flag("renew-deadline", "10s"));
  config.retry_period = parse_duration("--retry-period", flag("retry-period", "2s"));
  config.callbacks.on_started_leading = [&config] { say("leading " + config.identity); };
  config.callbacks.on_stopped_leading = [] { say("stopped"); };
  config.callbacks.on_new_leader = [](const std::string& id) { say("new-leader " + id); };
  config.on_error = [](const std::string& what, const std::exception& e) {
    std::lock_guard lock(out_mu);
    std::cerr << "error " << what << ": " << e.what() << std::endl;
  };
  if (config.identity.empty()) config.identity = runtime::default_identity();

  std::optional<std::string> kubeconfig;
  if (flags.contains("kubeconfig")) kubeconfig = flag("kubeconfig");
  // A request must fail well before the renew deadline, or a leader would notice too late that
  // it can no longer renew; and the elector retries on its own schedule.
  const auto timeout =
      std::max(std::chrono::seconds(1), std::chrono::duration_cast<std::chrono::seconds>(config.renew_deadline / 2));
  // Never destroyed: cpprestsdk frees a client's connections on its own pool thread, which it
  // never joins, and that races (ThreadSanitizer reports it) with OpenSSL's clean-up at exit.
  // Still reachable through this pointer, so LeakSanitizer does not count it.
  static kube::client* const client =
      new kube::client(std::make_shared<kube::cpprest_transport>(kube::resolve_config(kubeconfig), timeout),
                       kube::client_options{.max_attempts = 1});
  runtime::leader_elector elector(*client, config);
  say("identity " + elector.identity());

  std::jthread election([&](const std::stop_token& stop) {
    elector.run(stop);
    ::kill(::getpid(), SIGUSR1);  // lost the lease (or stopped): wake main so the process exits
  });
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  int sig = 0;
  sigwait(&set, &sig);
  election.request_stop();
  election.join();
  say("exit");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before any thread starts, so every thread inherits the mask and only sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "leader_election_probe: " << e.what() << std::endl;
    return 2;
  }
}
