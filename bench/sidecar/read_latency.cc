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
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>

#include "bench/common/open_loop.h"
#include "common/flags.h"

namespace {

namespace net = boost::asio;

class redis_connection {
 public:
  explicit redis_connection(std::uint16_t port) : socket_(datashare::bench::connect_loopback(ioc_, port)) {}
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
  net::ip::tcp::socket socket_;
  std::string in_;
};

}  // namespace

int main(int argc, char** argv) {
  namespace bench = datashare::bench;
  int http_port = 0, redis_port = 0, keys = 1000000;
  std::string path = "/v1/data/products/";
  bench::open_loop_options loop{.rate = 2000};
  datashare::flag_set flags("datashare-read-bench");
  flags.add("http", &http_port, "port of the sidecar's data API");
  flags.add("path", &path, "path prefix of a read, the key appended");
  flags.add("redis", &redis_port, "port of redis-server holding the same keys");
  flags.add("keys", &keys, "distinct keys, key:000000000000 .. key:(N-1)");
  bench::add_flags(flags, loop);
  auto problems = flags.parse(argc, argv);
  if (http_port <= 0 || redis_port <= 0) problems.emplace_back("--http and --redis are required");
  if (keys <= 0) problems.emplace_back("--keys must be > 0");
  bench::check(loop, problems);
  if (auto code = flags.exit_code(problems)) return *code;

  bench::http_connection http(static_cast<std::uint16_t>(http_port));
  redis_connection redis(static_cast<std::uint16_t>(redis_port));
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> pick(0, keys - 1);
  auto random_key = [&] {
    char key[32];
    std::snprintf(key, sizeof key, "key:%012d", pick(rng));
    return std::string(key);
  };
  auto run = bench::run_alternating(
      loop,
      [&](long long) -> std::string {
        const std::string key = random_key();
        std::size_t bytes = 0;
        const unsigned status = http.get(path + key, &bytes);
        if (status == 200 && bytes > 0) return "";
        return "sidecar answered " + std::to_string(status) + (status == 200 ? " (empty)" : "") + " for " + key;
      },
      [&](long long) -> std::string {
        const std::string key = random_key();
        return redis.get(key) ? "" : "redis missed " + key;
      });
  if (!run.error.empty()) {
    std::cerr << "datashare-read-bench: " << run.error << "\n";
    return 1;
  }
  bench::print("sidecar", run.first_us.size(), bench::quantiles_of(run.first_us));
  bench::print("redis", run.second_us.size(), bench::quantiles_of(run.second_us));
  return 0;
}
