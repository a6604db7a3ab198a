#include "bench/common/open_loop.h"

#include <algorithm>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

namespace datashare::bench {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

tcp::socket connect_loopback(net::io_context& ioc, std::uint16_t port) {
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  s.set_option(tcp::no_delay(true));
  return s;
}

http_connection::http_connection(std::uint16_t port) : socket_(connect_loopback(ioc_, port)) {}

unsigned http_connection::get(const std::string& target, std::size_t* body_bytes) {
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  req.keep_alive(true);
  bhttp::write(socket_, req);
  bhttp::response<bhttp::string_body> res;
  bhttp::read(socket_, buffer_, res);
  if (body_bytes != nullptr) *body_bytes = res.body().size();
  return res.result_int();
}

void add_flags(flag_set& flags, open_loop_options& o) {
  flags.add("rate", &o.rate, "requests per second, both streams together");
  flags.add("seconds", &o.seconds, "measured duration");
  flags.add("warmup", &o.warmup, "seconds run first and not counted");
}

void check(const open_loop_options& o, std::vector<std::string>& problems) {
  if (o.rate <= 0 || o.seconds <= 0) problems.emplace_back("--rate and --seconds must be > 0");
  if (o.warmup < 0) problems.emplace_back("--warmup must be >= 0");
}

stream_latencies run_alternating(const open_loop_options& o, const request_fn& first, const request_fn& second) {
  auto run = run_round_robin(o, {first, second});
  return {std::move(run.us[0]), std::move(run.us[1]), std::move(run.error)};
}

round_robin_latencies run_round_robin(const open_loop_options& o, const std::vector<request_fn>& streams) {
  using steady = std::chrono::steady_clock;
  const auto interval = std::chrono::nanoseconds(1'000'000'000LL / o.rate);
  const long long total = static_cast<long long>(o.rate) * (o.seconds + o.warmup);
  const long long skip = static_cast<long long>(o.rate) * o.warmup;
  const auto n = static_cast<long long>(streams.size());
  round_robin_latencies out;
  out.us.resize(streams.size());
  for (auto& v : out.us) v.reserve(static_cast<std::size_t>(total / n + 1));
  const auto start = steady::now();
  for (long long i = 0; i < total; ++i) {
    const auto due = start + interval * i;
    std::this_thread::sleep_until(due);
    const auto k = static_cast<std::size_t>(i % n);
    std::string error = streams[k](i / n);
    const double us = std::chrono::duration<double, std::micro>(steady::now() - due).count();
    if (!error.empty()) {
      out.error = std::move(error);
      return out;
    }
    if (i >= skip) out.us[k].push_back(us);
  }
  return out;
}

quantiles quantiles_of(std::vector<double>& us) {
  auto at = [&us](double q) {
    if (us.empty()) return 0.0;
    const auto k = static_cast<std::size_t>(q * static_cast<double>(us.size() - 1));
    std::nth_element(us.begin(), us.begin() + static_cast<std::ptrdiff_t>(k), us.end());
    return us[k];
  };
  return {.p50 = at(0.5), .p90 = at(0.9), .p99 = at(0.99), .p999 = at(0.999)};
}

void print(const char* name, std::size_t n, const quantiles& q) {
  std::printf("%-7s n=%zu p50 %.1f us p90 %.1f us p99 %.1f us p99.9 %.1f us\n", name, n, q.p50, q.p90, q.p99, q.p999);
}

}  // namespace datashare::bench
