// datashare-gateway --config FILE [--check]
//
// The coordinator of one DataProduct's all-or-nothing updates (see README.md). Reads and validates
// the config (exit 2 listing every problem), opens the decision log, serves /healthz at once,
// recovers every unfinished transaction (then /readyz answers 200), and serves until SIGTERM.
// Exit 1 when the log directory or a port cannot be used.
//
// DATASHARE_GATEWAY_CRASH_AT=<after-prepare|after-decision|during-commit>[:n] (tests only): the
// process kills itself with SIGKILL when the n-th transaction (default 1st) reaches that point.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "common/flags.h"
#include "gateway/api.h"
#include "gateway/config.h"
#include "gateway/coordinator.h"
#include "gateway/decision_log.h"
#include "sidecar/http/server.h"

namespace gw = datashare::gateway;

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  datashare::flag_set flags("datashare-gateway");
  flags.add("config", &config_path, "the gateway config file (schema version 1, see gateway/README.md)");
  flags.add("check", &check_only, "validate the config file and exit");
  auto problems = flags.parse(argc, argv);
  if (problems.empty() && config_path.empty()) problems.push_back("--config: required");
  if (auto code = flags.exit_code(problems)) return *code;
  auto loaded = gw::load_config_file(config_path);
  if (!loaded.config) {
    std::cerr << "datashare-gateway: " << config_path << " is not a valid gateway config (schema version "
              << gw::kSchemaVersion << "):\n"
              << datashare::sidecar::config::format_problems(loaded.problems);
    return 2;
  }
  gw::coordinator_options options;
  if (const char* crash = std::getenv("DATASHARE_GATEWAY_CRASH_AT"); crash != nullptr && *crash != '\0') {
    auto c = gw::parse_crash_point(crash);
    if (!c) {
      std::cerr << "datashare-gateway: DATASHARE_GATEWAY_CRASH_AT=" << crash
                << ": expected after-prepare, after-decision or during-commit, optionally :<n>\n";
      return 2;
    }
    options.crash = *c;
  }
  if (check_only) {
    std::cout << config_path << ": valid\n";
    return 0;
  }
  const auto& cfg = *loaded.config;

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  gw::gateway_metrics metrics(cfg.participants);
  std::vector<gw::log_record> records;
  std::string error;
  gw::log_options log_options;
  log_options.on_sync = [&metrics](std::chrono::steady_clock::duration took, std::size_t commits) {
    metrics.log_sync.Observe(std::chrono::duration<double>(took).count());
    metrics.log_sync_commits.Observe(static_cast<double>(commits));
  };
  auto log = gw::decision_log::open(cfg.data_dir, records, error, log_options);
  if (!log) {
    std::cerr << "datashare-gateway: decision log: " << error << "\n";
    return 1;
  }
  // The participants' calls run on the server's I/O threads, beside the requests they answer.
  datashare::sidecar::http::server server(cfg.threads);
  std::vector<std::unique_ptr<gw::participant_link>> links;
  for (const auto& p : cfg.participants)
    links.push_back(std::make_unique<gw::http_link>(server.contexts(), *datashare::sidecar::http::parse_origin(p.url),
                                                    1, &metrics.call_messages));
  gw::coordinator coordinator(cfg, std::move(links), *log, metrics, options);
  gw::api api(cfg, coordinator, metrics);

  std::uint16_t data_port = 0, admin_port = 0;
  if (auto ec = server.listen(
          cfg.data.address, cfg.data.port,
          [&api](const datashare::sidecar::http::request& req, const datashare::sidecar::http::responder& r) {
            api.handle_data(req, r);
          },
          data_port)) {
    std::cerr << "datashare-gateway: cannot listen on " << cfg.data.address << ":" << cfg.data.port << ": "
              << ec.message() << "\n";
    return 1;
  }
  if (auto ec = server.listen(
          cfg.admin.address, cfg.admin.port,
          [&api](const datashare::sidecar::http::request& req, const datashare::sidecar::http::responder& r) {
            api.handle_admin(req, r);
          },
          admin_port)) {
    std::cerr << "datashare-gateway: cannot listen on " << cfg.admin.address << ":" << cfg.admin.port << ": "
              << ec.message() << "\n";
    return 1;
  }
  server.start();
  std::cerr << "datashare-gateway: product " << cfg.product.namespace_name << "/" << cfg.product.name << ", data on "
            << cfg.data.address << ":" << data_port << ", admin on " << cfg.admin.address << ":" << admin_port << ", "
            << cfg.participants.size() << " participants; recovering " << records.size() << " log records" << std::endl;
  coordinator.recover(records);
  std::cerr << "datashare-gateway: ready" << std::endl;

  int sig = 0;
  sigwait(&signals, &sig);
  std::cerr << "datashare-gateway: " << strsignal(sig) << ", stopping" << std::endl;
  coordinator.stop();  // the transactions in flight answer first, on the I/O threads
  server.stop();
  return 0;
}
