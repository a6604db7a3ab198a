// P8 and P9: what the informer cache costs, and how fast it follows the API server.
//
//   informer_bench memory [--objects 10000] [--value-bytes 1024]
//     Fills a namespace with ConfigMaps (1 KiB of data each), then measures the RSS growth of
//     this process when an informer caches them, against the JSON size of the same objects as
//     the API server sends them (the anchor: the objects' own size).
//   informer_bench watch [--seconds 20] [--writers 2]
//     An informer follows a namespace while writer threads update ConfigMaps as fast as the API
//     server accepts them; reports the server's write rate (the anchor: what the server can send)
//     and the rate at which watch events were applied to the cache.
//
// Needs KUBECONFIG (hack/local-cluster.sh up; source its env). Prints one summary line per bar.
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/memory.h"
#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"
#include "operator/runtime/informer.h"

namespace {
using namespace datashare;
using kube::json;
using clock_type = std::chrono::steady_clock;

long rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

int arg_int(int argc, char** argv, const std::string& name, int fallback) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (argv[i] == name) return std::stoi(argv[i + 1]);
  }
  return fallback;
}

std::unique_ptr<kube::client> make_client() {
  const char* kc = std::getenv("KUBECONFIG");
  if (kc == nullptr) throw std::runtime_error("KUBECONFIG is not set: hack/local-cluster.sh up, then source its env");
  auto cfg = kube::load_kubeconfig({kc});
  return std::make_unique<kube::client>(std::make_shared<kube::cpprest_transport>(cfg));
}

void ensure_namespace(kube::client& c, const std::string& ns) {
  try {
    c.create(kube::resources::namespaces, {{"metadata", {{"name", ns}}}});
  } catch (const kube::api_error& e) {
    if (!kube::is_already_exists(e)) throw;
  }
}

// Creates ConfigMaps cm-<i> for i in [0, count) that do not exist yet, on `threads` threads.
void fill(kube::client& c, const std::string& ns, int count, int value_bytes, int threads) {
  try {
    c.get(kube::resources::config_maps, ns, "cm-" + std::to_string(count - 1));
    return;  // filled by an earlier run (objects are created in order, the last one last)
  } catch (const kube::api_error& e) {
    if (!kube::is_not_found(e)) throw;
  }
  std::string value(static_cast<size_t>(value_bytes), 'x');
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i; (i = next++) < count;) {
        try {
          c.create(kube::resources::config_maps, {{"apiVersion", "v1"},
                                                  {"kind", "ConfigMap"},
                                                  {"metadata",
                                                   {{"name", "cm-" + std::to_string(i)},
                                                    {"namespace", ns},
                                                    {"labels", {{"app.kubernetes.io/part-of", "datashare-bench"}}}}},
                                                  {"data", {{"payload", value}}}});
        } catch (const kube::api_error& e) {
          if (!kube::is_already_exists(e)) throw;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
}

int memory(int argc, char** argv) {
  const int objects = arg_int(argc, argv, "--objects", 10000);
  const int value_bytes = arg_int(argc, argv, "--value-bytes", 1024);
  const std::string ns = "bench-informer-memory";
  auto c = make_client();
  ensure_namespace(*c, ns);
  fill(*c, ns, objects, value_bytes, 4);

  malloc_trim(0);
  const long before = rss_kib();
  runtime::informer inf(*c, {.kind = kube::resources::config_maps, .ns = ns, .page_size = 500});
  inf.start();
  if (!inf.wait_for_sync(std::chrono::minutes(5))) throw std::runtime_error("informer did not sync");
  malloc_trim(0);
  const long after = rss_kib();
  if (std::getenv("BENCH_MALLOC_STATS") != nullptr) malloc_stats();
  struct mallinfo2 mi = mallinfo2();
  std::printf("heap in use after sync: %.1f MiB (arena %.1f MiB, mmap %.1f MiB)\n",
              static_cast<double>(mi.uordblks + mi.hblkhd) / 1048576.0, static_cast<double>(mi.arena) / 1048576.0,
              static_cast<double>(mi.hblkhd) / 1048576.0);
  // The anchor, measured after: the objects' JSON as the server sends them.
  size_t json_bytes = 0, count = 0;
  for (const auto& o : c->list_all(kube::resources::config_maps, ns, {.limit = 500}).items) {
    json_bytes += o.dump().size();
    ++count;
  }
  const double cache_bytes = static_cast<double>(after - before) * 1024.0;
  const double per_object = cache_bytes / static_cast<double>(inf.cache().size());
  const double json_per_object = static_cast<double>(json_bytes) / static_cast<double>(count);
  std::printf("objects=%zu cached=%zu rss_before=%ld KiB rss_after=%ld KiB total_rss=%.1f MiB\n", count,
              inf.cache().size(), before, after, static_cast<double>(after) / 1024.0);
  std::printf(
      "P8 informer cache memory per object: %.0f B vs %.0f B of JSON = %.2fx (bar <= 2x; total RSS %.1f MiB, bar <= 64 "
      "MiB) [bench/operator/run.sh memory]\n",
      per_object, json_per_object, per_object / json_per_object, static_cast<double>(after) / 1024.0);
  inf.stop();
  return 0;
}

int watch(int argc, char** argv) {
  const int seconds = arg_int(argc, argv, "--seconds", 20);
  const int writers = arg_int(argc, argv, "--writers", 2);
  const int keys = 200;
  const std::string ns = "bench-informer-watch";
  auto c = make_client();
  ensure_namespace(*c, ns);
  fill(*c, ns, keys, 256, 2);

  std::atomic<uint64_t> applied{0};
  runtime::informer inf(*c, {.kind = kube::resources::config_maps, .ns = ns});
  inf.add_handler({.on_update = [&](const runtime::object_ptr&, const runtime::object_ptr&) { ++applied; }});
  inf.start();
  if (!inf.wait_for_sync(std::chrono::minutes(1))) throw std::runtime_error("informer did not sync");

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> written{0};
  std::vector<std::thread> pool;
  const auto start = clock_type::now();
  for (int w = 0; w < writers; ++w) {
    pool.emplace_back([&, w] {
      auto wc = make_client();  // a client (and connections) of its own, like a second process
      for (uint64_t i = 0; !stop; ++i) {
        const std::string name =
            "cm-" + std::to_string((i * static_cast<uint64_t>(writers) + static_cast<uint64_t>(w)) % keys);
        wc->merge_patch(kube::resources::config_maps, ns, name, {{"data", {{"n", std::to_string(i)}}}});
        ++written;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  const double write_secs = std::chrono::duration<double>(clock_type::now() - start).count();
  const uint64_t total = written.load();
  // Let the last events arrive, then measure how long applying took overall.
  const auto drain_deadline = clock_type::now() + std::chrono::seconds(30);
  while (applied.load() < total && clock_type::now() < drain_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const double apply_secs = std::chrono::duration<double>(clock_type::now() - start).count();
  const double write_rate = static_cast<double>(total) / write_secs;
  const double apply_rate = static_cast<double>(applied.load()) / apply_secs;
  std::printf("writes=%lu in %.1f s, watch events applied=%lu in %.1f s\n", static_cast<unsigned long>(total),
              write_secs, static_cast<unsigned long>(applied.load()), apply_secs);
  std::printf(
      "P9 watch events applied to the cache: %.0f events/s vs %.0f writes/s accepted by the API server = %.2fx (no "
      "bar) [bench/operator/run.sh watch]\n",
      apply_rate, write_rate, apply_rate / write_rate);
  inf.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  datashare::limit_malloc_arenas();  // as the operator does
  datashare::log::set_level(datashare::log::level::warn);
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "memory") return memory(argc, argv);
    if (mode == "watch") return watch(argc, argv);
    std::cerr << "usage: informer_bench memory [--objects N] [--value-bytes N] | watch [--seconds N] [--writers N]\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "informer_bench: " << e.what() << "\n";
    return 1;
  }
}
