// datashare-read-bench: P2's latency half, open loop, the sidecar's GET beside Redis' GET.
//
//   datashare-read-bench --http PORT --path /v1/data/products/ --redis PORT --keys N --rate R --seconds S
//
// wrk and redis-benchmark are closed loops: with 50 connections each keeps 50 requests queued at
// the server, so their p99 is the queue (Little's law), not the server. Here requests are sent at
// a fixed rate below saturation, each latency counted from the request's due time (corrected for
// coordinated omission, as wrk2 does: a late answer also charges the requests behind it). HTTP
// and Redis requests alternate, one keep-alive connection each, so both servers see the same
// machine at the same moments; each stream runs at R/2. Keys are random among
// key:000000000000 .. key:(N-1) (redis-benchmark's -r format, the keys bench/sidecar/run.sh
// loads into both). Prints p50/p90/p99/p99.9 of both; exits 1 on a miss or an error.
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
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

tcp::socket connect(net::io_context& ioc, int port) {
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port)));
  s.set_option(tcp::no_delay(true));
  return s;
}

class http_conn {
 public:
  explicit http_conn(int port) : socket_(connect(ioc_, port)) {}
  // The status; the body must not be empty when it is 200.
  unsigned get(const std::string& target) {
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.keep_alive(true);
    bhttp::write(socket_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket_, buffer_, res);
    return res.result_int() == 200 && res.body().empty() ? 0 : res.result_int();
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

class redis_conn {
 public:
  explicit redis_conn(int port) : socket_(connect(ioc_, port)) {}
  // Whether GET found the key (a bulk string reply).
  bool get(const std::string& key) {
    std::string cmd = "*2\r\n$3\r\nGET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
    net::write(socket_, net::buffer(cmd));
    std::size_t n = net::read_until(socket_, net::dynamic_buffer(in_), "\r\n");
    if (in_.empty() || in_[0] != '$') return false;
    long len = std::stol(in_.substr(1, n - 3));
    in_.erase(0, n);
    if (len < 0) return false;
    auto want = static_cast<std::size_t>(len) + 2;
    if (in_.size() < want) net::read(socket_, net::dynamic_buffer(in_), net::transfer_exactly(want - in_.size()));
    in_.erase(0, want);
    return true;
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  std::string in_;
};

double quantile_us(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  int http_port = 0, redis_port = 0, keys = 1000000, rate = 2000, seconds = 10, warmup = 2;
  std::string path = "/v1/data/products/";
  datashare::flag_set flags("datashare-read-bench");
  flags.add("http", &http_port, "port of the sidecar's data API");
  flags.add("path", &path, "path prefix of a read, the key appended");
  flags.add("redis", &redis_port, "port of redis-server holding the same keys");
  flags.add("keys", &keys, "distinct keys, key:000000000000 .. key:(N-1)");
  flags.add("rate", &rate, "requests per second, both streams together");
  flags.add("seconds", &seconds, "measured duration");
  flags.add("warmup", &warmup, "seconds run first and not counted");
  auto problems = flags.parse(argc, argv);
  if (http_port <= 0 || redis_port <= 0) problems.push_back("--http and --redis are required");
  if (rate <= 0 || seconds <= 0 || keys <= 0 || warmup < 0) problems.push_back("--rate, --seconds, --keys must be > 0");
  if (!problems.empty() || flags.help_requested()) {
    for (const auto& p : problems) std::cerr << "datashare-read-bench: " << p << "\n";
    std::cerr << flags.usage();
    return flags.help_requested() ? 0 : 2;
  }
  http_conn http(http_port);
  redis_conn redis(redis_port);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> pick(0, keys - 1);
  const auto interval = std::chrono::nanoseconds(1'000'000'000LL / rate);
  const long long total = static_cast<long long>(rate) * (seconds + warmup);
  const long long skip = static_cast<long long>(rate) * warmup;
  std::vector<double> h_us, r_us;
  h_us.reserve(static_cast<std::size_t>(total / 2 + 1));
  r_us.reserve(static_cast<std::size_t>(total / 2 + 1));
  char key[32];
  const auto start = steady::now();
  for (long long i = 0; i < total; ++i) {
    const auto due = start + interval * i;
    std::this_thread::sleep_until(due);
    std::snprintf(key, sizeof key, "key:%012d", pick(rng));
    const bool via_http = (i % 2) == 0;
    bool ok = false;
    unsigned status = 0;
    if (via_http) {
      status = http.get(path + key);
      ok = status == 200;
    } else {
      ok = redis.get(key);
    }
    const double us = std::chrono::duration<double, std::micro>(steady::now() - due).count();
    if (!ok) {
      std::cerr << "datashare-read-bench: "
                << (via_http ? "sidecar answered " + std::to_string(status) : "redis missed") << " for " << key << "\n";
      return 1;
    }
    if (i >= skip) (via_http ? h_us : r_us).push_back(us);
  }
  const double qs[] = {0.5, 0.9, 0.99, 0.999};
  double h[4], r[4];
  for (int i = 0; i < 4; ++i) {
    h[i] = quantile_us(h_us, qs[i]);
    r[i] = quantile_us(r_us, qs[i]);
  }
  std::printf("sidecar n=%zu p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us\n", h_us.size(), h[0], h[1], h[2], h[3]);
  std::printf("redis   n=%zu p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us\n", r_us.size(), r[0], r[1], r[2], r[3]);
  return 0;
}
