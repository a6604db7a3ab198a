// A minimal controller binary on the runtime: the manager's standard flags, one informer on the
// ConfigMaps of --watch-namespace, one controller that prints each key it reconciles. For the
// process-level tests of the manager (leader hand-over, graceful stop, metrics), and for trying
// the runtime against a cluster by hand. Prints, one per line on stdout:
//   metrics-port N | health-port N | reconciled <namespace>/<name> | exit <code>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "common/flags.h"
#include "common/log.h"
#include "common/memory.h"
#include "operator/runtime/manager_flags.h"

namespace {
std::atomic<datashare::runtime::manager*> g_manager{nullptr};
}

int main(int argc, char** argv) {
  using namespace datashare;
  limit_malloc_arenas();
  // First, before any thread exists, so that every thread inherits the blocked signals.
  runtime::stop_on_signals([] {
    if (auto* m = g_manager.load())
      m->request_stop();
    else
      std::_Exit(0);  // nothing started yet
  });
  runtime::manager_flags flags;
  std::string watch_namespace = "default";
  flag_set set("manager_probe");
  flags.register_on(set);
  set.add("watch-namespace", &watch_namespace, "namespace whose ConfigMaps are reconciled");
  auto problems = set.parse(argc, argv);
  auto more = flags.validate();
  problems.insert(problems.end(), more.begin(), more.end());
  if (auto code = set.exit_code(problems)) return *code;
  try {
    runtime::manager_setup s = runtime::setup_manager(flags);
    auto& inf = s.mgr->add_informer(std::make_unique<runtime::informer>(
        *s.client, runtime::watcher_options{.kind = kube::resources::config_maps, .ns = watch_namespace}));
    auto& c = s.mgr->add_controller(std::make_unique<runtime::controller>(
        runtime::controller_options{.name = "configmaps", .workers = 2, .registry = &s.mgr->registry()},
        [](const runtime::request& r) -> runtime::reconcile_result {
          std::printf("reconciled %s\n", r.key().c_str());
          std::fflush(stdout);
          return {};
        }));
    c.watch_for(inf);
    runtime::manager* mgr = s.mgr.get();
    // Ports are known once run() has bound them: report them from a side thread.
    std::thread report([mgr] {
      for (int i = 0; i < 3000 && (mgr->metrics_port() == 0 || mgr->health_port() == 0); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      std::printf("metrics-port %u\nhealth-port %u\n", mgr->metrics_port(), mgr->health_port());
      std::fflush(stdout);
    });
    g_manager = mgr;
    int code = mgr->run();
    report.join();
    std::printf("exit %d\n", code);
    std::fflush(stdout);
    return code;
  } catch (const std::exception& e) {
    log::error("manager_probe failed", {{"error", e.what()}});
    return 1;
  }
}
