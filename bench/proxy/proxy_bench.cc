// datashare-proxy-bench: P4, the latency the sync proxy adds to a read of the owner.
//
//   datashare-proxy-bench --direct PORT --direct-path /products/ --proxy PORT --proxy-path /v1/data/products/
//                         --keys N --rate R --seconds S
//
// Open loop at a fixed rate, corrected for coordinated omission (as wrk2 does): request i is
// due at start + i/R and its latency counts from then, so a slow answer also delays and charges
// the requests queued behind it. Direct and proxied requests alternate on two keep-alive
// connections, so both see the same machine, the same owner and the same moment; each stream
// runs at R/2. Keys cycle through key-0 .. key-(N-1). Prints p50/p90/p99/p999 of both and the
// differences; exits 1 on any non-200 answer.
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common/flags.h"

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

class connection {
 public:
  explicit connection(std::uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    socket_.set_option(tcp::no_delay(true));
  }
  unsigned get(const std::string& target) {
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.keep_alive(true);
    bhttp::write(socket_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket_, buffer_, res);
    return res.result_int();
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

double quantile_us(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  int direct_port = 0, proxy_port = 0, keys = 1000, rate = 1000, seconds = 10, warmup = 2;
  std::string direct_path = "/products/", proxy_path = "/v1/data/products/";
  datashare::flag_set flags("datashare-proxy-bench");
  flags.add("direct", &direct_port, "port of the owner, called directly");
  flags.add("direct-path", &direct_path, "path prefix of a direct read, the key appended");
  flags.add("proxy", &proxy_port, "port of the sidecar's data API");
  flags.add("proxy-path", &proxy_path, "path prefix of a proxied read, the key appended");
  flags.add("keys", &keys, "distinct keys, key-0 .. key-(N-1)");
  flags.add("rate", &rate, "requests per second, both streams together");
  flags.add("seconds", &seconds, "measured duration");
  flags.add("warmup", &warmup, "seconds run first and not counted");
  auto problems = flags.parse(argc, argv);
  if (direct_port <= 0 || proxy_port <= 0) problems.push_back("--direct and --proxy are required");
  if (rate <= 0 || seconds <= 0 || keys <= 0 || warmup < 0) problems.push_back("--rate, --seconds, --keys must be > 0");
  if (!problems.empty() || flags.help_requested()) {
    for (const auto& p : problems) std::cerr << "datashare-proxy-bench: " << p << "\n";
    std::cerr << flags.usage();
    return flags.help_requested() ? 0 : 2;
  }
  connection direct(static_cast<std::uint16_t>(direct_port));
  connection proxied(static_cast<std::uint16_t>(proxy_port));
  const auto interval = std::chrono::nanoseconds(1'000'000'000LL / rate);
  const long long total = static_cast<long long>(rate) * (seconds + warmup);
  const long long skip = static_cast<long long>(rate) * warmup;
  std::vector<double> d_us, p_us;
  d_us.reserve(static_cast<std::size_t>(total / 2 + 1));
  p_us.reserve(static_cast<std::size_t>(total / 2 + 1));
  const auto start = steady::now();
  for (long long i = 0; i < total; ++i) {
    const auto due = start + interval * i;
    std::this_thread::sleep_until(due);
    const std::string key = "key-" + std::to_string((i / 2) % keys);
    const bool via_proxy = (i % 2) == 1;
    const unsigned status = via_proxy ? proxied.get(proxy_path + key) : direct.get(direct_path + key);
    const double us = std::chrono::duration<double, std::micro>(steady::now() - due).count();
    if (status != 200) {
      std::cerr << "datashare-proxy-bench: " << (via_proxy ? "proxy" : "direct") << " answered " << status << " for "
                << key << "\n";
      return 1;
    }
    if (i >= skip) (via_proxy ? p_us : d_us).push_back(us);
  }
  const double qs[] = {0.5, 0.9, 0.99, 0.999};
  double d[4], p[4];
  for (int i = 0; i < 4; ++i) {
    d[i] = quantile_us(d_us, qs[i]);
    p[i] = quantile_us(p_us, qs[i]);
  }
  std::printf("direct  n=%zu p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us\n", d_us.size(), d[0], d[1], d[2], d[3]);
  std::printf("proxy   n=%zu p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us\n", p_us.size(), p[0], p[1], p[2], p[3]);
  std::printf("added   p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us\n", p[0] - d[0], p[1] - d[1], p[2] - d[2],
              p[3] - d[3]);
  return 0;
}
