// datashare-proxy-bench: P4, the latency the sync proxy adds to a read of the owner.
//
//   datashare-proxy-bench --direct PORT --direct-path /products/ --proxy PORT --proxy-path /v1/data/products/
//                         [--proxy2 PORT] [--ref PORT --ref-path /products/] --keys N --rate R --seconds S
//
// Open loop at a fixed rate, corrected for coordinated omission (as wrk2 does): request i is
// due at start + i/R and its latency counts from then, so a slow answer also delays and charges
// the requests queued behind it. Direct and proxied requests alternate on two keep-alive
// connections, so both see the same machine, the same owner and the same moment; each stream
// runs at R/2. Keys cycle through key-0 .. key-(N-1). Prints p50/p90/p99/p999 of both and the
// differences; exits 1 on any non-200 answer. With --proxy2 (a second sidecar, configured
// differently: e.g. listen.busyPollMicros) three streams take turns, each at R/3, and the second
// proxy's rows are printed too (`proxy2`, `added2`). With --ref (a reference reverse proxy in front
// of the same owner, e.g. HAProxy) it takes its turn too (`ref`, `added-ref`): what any extra hop
// costs on this machine, measured beside ours.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/common/open_loop.h"
#include "common/flags.h"

int main(int argc, char** argv) {
  namespace bench = datashare::bench;
  int direct_port = 0, proxy_port = 0, proxy2_port = 0, ref_port = 0, keys = 1000;
  std::string direct_path = "/products/", proxy_path = "/v1/data/products/", ref_path = "/products/";
  bench::open_loop_options loop;
  datashare::flag_set flags("datashare-proxy-bench");
  flags.add("direct", &direct_port, "port of the owner, called directly");
  flags.add("direct-path", &direct_path, "path prefix of a direct read, the key appended");
  flags.add("proxy", &proxy_port, "port of the sidecar's data API");
  flags.add("proxy-path", &proxy_path, "path prefix of a proxied read, the key appended");
  flags.add("proxy2", &proxy2_port, "port of a second sidecar's data API, measured beside the first (optional)");
  flags.add("ref", &ref_port, "port of a reference reverse proxy in front of the same owner (optional)");
  flags.add("ref-path", &ref_path, "path prefix of a read through the reference proxy, the key appended");
  flags.add("keys", &keys, "distinct keys, key-0 .. key-(N-1)");
  bench::add_flags(flags, loop);
  auto problems = flags.parse(argc, argv);
  if (direct_port <= 0 || proxy_port <= 0) problems.emplace_back("--direct and --proxy are required");
  if (keys <= 0) problems.emplace_back("--keys must be > 0");
  bench::check(loop, problems);
  if (auto code = flags.exit_code(problems)) return *code;

  bench::http_connection direct(static_cast<std::uint16_t>(direct_port));
  bench::http_connection proxied(static_cast<std::uint16_t>(proxy_port));
  auto reader = [keys](bench::http_connection& c, const std::string& prefix, const char* who) {
    return [&c, &prefix, keys, who](long long i) -> std::string {
      const std::string key = "key-" + std::to_string(i % keys);
      const unsigned status = c.get(prefix + key);
      return status == 200 ? "" : std::string(who) + " answered " + std::to_string(status) + " for " + key;
    };
  };
  std::vector<bench::request_fn> streams{reader(direct, direct_path, "direct"), reader(proxied, proxy_path, "proxy")};
  // Row names of the streams after the direct one, and of their differences to it.
  std::vector<std::pair<std::string, std::string>> rows{{"proxy", "added"}};
  std::unique_ptr<bench::http_connection> proxied2, ref;
  if (proxy2_port > 0) {
    proxied2 = std::make_unique<bench::http_connection>(static_cast<std::uint16_t>(proxy2_port));
    streams.push_back(reader(*proxied2, proxy_path, "proxy2"));
    rows.emplace_back("proxy2", "added2");
  }
  if (ref_port > 0) {
    ref = std::make_unique<bench::http_connection>(static_cast<std::uint16_t>(ref_port));
    streams.push_back(reader(*ref, ref_path, "ref"));
    rows.emplace_back("ref", "added-ref");
  }
  auto run = bench::run_round_robin(loop, streams);
  if (!run.error.empty()) {
    std::cerr << "datashare-proxy-bench: " << run.error << "\n";
    return 1;
  }
  const auto d = bench::quantiles_of(run.us[0]);
  bench::print("direct", run.us[0].size(), d);
  for (std::size_t k = 1; k < run.us.size(); ++k) {
    const auto p = bench::quantiles_of(run.us[k]);
    const auto& [name, added] = rows[k - 1];
    bench::print(name.c_str(), run.us[k].size(), p);
    std::printf("%-9s p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us\n", added.c_str(), p.p50 - d.p50, p.p90 - d.p90,
                p.p99 - d.p99, p.p999 - d.p999);
  }
  return 0;
}
