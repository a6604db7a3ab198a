#pragma once
// The open-loop latency driver shared by datashare-read-bench (P2) and datashare-proxy-bench
// (P4): two request streams alternating at a fixed rate, one blocking keep-alive connection
// each, every latency counted from the request's due time (corrected for coordinated
// omission, as wrk2 does: a late answer also charges the requests queued behind it), so both
// streams see the same machine at the same moments.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/flags.h"

namespace datashare::bench {

// A blocking HTTP/1.1 keep-alive connection to 127.0.0.1:port, TCP_NODELAY.
class http_connection {
 public:
  explicit http_connection(std::uint16_t port);
  // GET `target`: the status, and the body's size through `body_bytes` when asked.
  unsigned get(const std::string& target, std::size_t* body_bytes = nullptr);

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

boost::asio::ip::tcp::socket connect_loopback(boost::asio::io_context& ioc, std::uint16_t port);

struct open_loop_options {
  int rate = 1000;  // requests per second, both streams together
  int seconds = 10;
  int warmup = 2;  // seconds run first and not counted
};

// --rate, --seconds, --warmup on `flags`; check() adds what is wrong with them to `problems`.
void add_flags(flag_set& flags, open_loop_options& o);
void check(const open_loop_options& o, std::vector<std::string>& problems);

// Request i (from 0) of a stream; "" when it went well, else what went wrong (the run stops).
using request_fn = std::function<std::string(long long i)>;

struct stream_latencies {
  std::vector<double> first_us, second_us;
  std::string error;  // non-empty: the run stopped at the first failed request
};

// Even requests go to `first`, odd ones to `second`; each stream runs at rate/2.
stream_latencies run_alternating(const open_loop_options& o, const request_fn& first, const request_fn& second);

// Request i goes to stream i % streams.size(), as request i / streams.size() of that stream;
// each stream runs at rate/streams.size(). Latencies per stream, in its order.
struct round_robin_latencies {
  std::vector<std::vector<double>> us;
  std::string error;  // non-empty: the run stopped at the first failed request
};
round_robin_latencies run_round_robin(const open_loop_options& o, const std::vector<request_fn>& streams);

struct quantiles {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0;
};
quantiles quantiles_of(std::vector<double>& us);  // reorders `us`
// "<name> n=N p50 X us p90 X us p99 X us p99.9 X us\n"
void print(const char* name, std::size_t n, const quantiles& q);

}  // namespace datashare::bench
