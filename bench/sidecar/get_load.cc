// datashare-get-load: P2's throughput half with one load generator for both servers.
//
//   datashare-get-load --protocol http|redis --port PORT [--path /v1/data/products/] --keys N
//                      --connections C --seconds S
//
// A closed loop like wrk and redis-benchmark (each of C keep-alive connections has one GET in
// flight, a random key among key:000000000000 .. key:(N-1)), on one thread with epoll and plain
// non-blocking sockets. Why a third client: on a 2-core machine the load generator shares the
// cores with the server, so its own CPU per request is part of the figure. wrk (its Lua request
// function per request) spends ~10 us per request here, redis-benchmark ~7: the same server
// would look a quarter slower behind wrk. This program speaks HTTP/1.1 and RESP with the same
// loop, so the two servers are compared behind the same client; it prints its own CPU per
// request beside the rate so a reader can check that. Every answer is checked (HTTP 200 with a
// body, a Redis bulk string); a miss or an error ends the run with status 1.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/flags.h"

namespace {

using clock_type = std::chrono::steady_clock;

struct connection {
  int fd = -1;
  std::string out;  // the request being sent
  std::size_t sent = 0;
  std::string in;  // what has arrived of the answer
  clock_type::time_point started;
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The length of a complete answer at the start of `in`, 0 while incomplete, -1 when it is not
// the answer a GET of a present key gets (then `why` says what it was).
long complete_http(std::string_view in, std::string& why) {
  auto end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return 0;
  if (in.substr(0, 13) != "HTTP/1.1 200 ") {
    why = std::string(in.substr(0, in.find("\r\n")));
    return -1;
  }
  std::string_view head = in.substr(0, end);
  std::size_t at = std::string_view::npos;
  for (std::string_view name : {"\r\nContent-Length:", "\r\ncontent-length:"}) {
    at = head.find(name);
    if (at != std::string_view::npos) {
      at += name.size();
      break;
    }
  }
  if (at == std::string_view::npos) {
    why = "an answer without Content-Length";
    return -1;
  }
  while (at < head.size() && head[at] == ' ') ++at;
  long length = 0;
  while (at < head.size() && head[at] >= '0' && head[at] <= '9') length = length * 10 + (head[at++] - '0');
  if (length == 0) {
    why = "an empty body";
    return -1;
  }
  auto total = static_cast<long>(end + 4) + length;
  return static_cast<long>(in.size()) >= total ? total : 0;
}

long complete_redis(std::string_view in, std::string& why) {
  auto eol = in.find("\r\n");
  if (eol == std::string_view::npos) return 0;
  if (in[0] != '$' || in.substr(0, 3) == "$-1") {
    why = "redis answered " + std::string(in.substr(0, eol));
    return -1;
  }
  long length = 0;
  for (std::size_t i = 1; i < eol && in[i] >= '0' && in[i] <= '9'; ++i) length = length * 10 + (in[i] - '0');
  auto total = static_cast<long>(eol + 2) + length + 2;
  return static_cast<long>(in.size()) >= total ? total : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string protocol = "http";
  std::string path = "/v1/data/products/";
  int port = 0, keys = 1000000, connections = 50, seconds = 10, warmup = 1;
  datashare::flag_set flags("datashare-get-load");
  flags.add("protocol", &protocol, "http (the sidecar's GET) or redis (RESP GET)");
  flags.add("port", &port, "the server's port on 127.0.0.1");
  flags.add("path", &path, "http: path prefix of a read, the key appended");
  flags.add("keys", &keys, "distinct keys, key:000000000000 .. key:(N-1)");
  flags.add("connections", &connections, "keep-alive connections, one GET in flight on each");
  flags.add("seconds", &seconds, "measured seconds");
  flags.add("warmup", &warmup, "seconds run first and not counted");
  auto problems = flags.parse(argc, argv);
  if (protocol != "http" && protocol != "redis") problems.emplace_back("--protocol: http or redis");
  if (port <= 0 || port > 65535) problems.emplace_back("--port is required (1..65535)");
  if (keys <= 0) problems.emplace_back("--keys must be > 0");
  if (connections <= 0 || connections > 10000) problems.emplace_back("--connections: 1..10000");
  if (seconds <= 0 || warmup < 0) problems.emplace_back("--seconds > 0, --warmup >= 0");
  if (auto code = flags.exit_code(problems)) return *code;
  const bool http = protocol == "http";

  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> pick(0, keys - 1);
  auto next_request = [&](connection& c) {
    char key[32];
    int n = std::snprintf(key, sizeof key, "key:%012d", pick(rng));
    c.out.clear();
    if (http) {
      c.out.append("GET ")
          .append(path)
          .append(key, static_cast<std::size_t>(n))
          .append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    } else {
      c.out.append("*2\r\n$3\r\nGET\r\n$")
          .append(std::to_string(n))
          .append("\r\n")
          .append(key, static_cast<std::size_t>(n))
          .append("\r\n");
    }
    c.sent = 0;
    c.started = clock_type::now();
  };

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<connection> conns(static_cast<std::size_t>(connections));
  for (std::size_t i = 0; i < conns.size(); ++i) {
    auto& c = conns[i];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::cerr << "datashare-get-load: connect 127.0.0.1:" << port << ": " << std::strerror(errno) << "\n";
      return 1;
    }
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }

  // Sends what is left of c's request; false on an error. A GET fits the socket buffer at once.
  auto send_rest = [](connection& c) {
    while (c.sent < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      c.sent += static_cast<std::size_t>(n);
    }
    return true;
  };
  for (auto& c : conns) {
    next_request(c);
    if (!send_rest(c)) {
      std::cerr << "datashare-get-load: send: " << std::strerror(errno) << "\n";
      return 1;
    }
  }

  const auto start = clock_type::now();
  const auto measure_from = start + std::chrono::seconds(warmup);
  const auto end = measure_from + std::chrono::seconds(seconds);
  bool measuring = warmup == 0;
  double cpu0 = measuring ? cpu_seconds() : 0;
  long long done = 0;
  std::vector<float> latencies_us;
  latencies_us.reserve(1 << 20);
  std::vector<epoll_event> events(conns.size());
  char buf[64 << 10];
  std::string why;
  for (;;) {
    auto now = clock_type::now();
    if (!measuring && now >= measure_from) {
      measuring = true;
      cpu0 = cpu_seconds();
    }
    if (now >= end) break;
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int e = 0; e < n; ++e) {
      auto& c = conns[events[static_cast<std::size_t>(e)].data.u64];
      for (;;) {
        ssize_t got = ::recv(c.fd, buf, sizeof buf, 0);
        if (got > 0) {
          c.in.append(buf, static_cast<std::size_t>(got));
          if (static_cast<std::size_t>(got) < sizeof buf) break;
          continue;
        }
        if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          std::cerr << "datashare-get-load: the server closed a connection or failed: "
                    << (got == 0 ? "end of stream" : std::strerror(errno)) << "\n";
          return 1;
        }
        break;
      }
      long whole = http ? complete_http(c.in, why) : complete_redis(c.in, why);
      if (whole < 0) {
        std::cerr << "datashare-get-load: " << why << " (request: " << c.out.substr(0, c.out.find('\r')) << ")\n";
        return 1;
      }
      if (whole == 0) continue;  // the rest of the answer is on its way
      if (static_cast<std::size_t>(whole) != c.in.size()) {
        std::cerr << "datashare-get-load: more bytes than one answer (the server answered twice?)\n";
        return 1;
      }
      c.in.clear();
      auto finished = clock_type::now();
      if (measuring && finished < end) {
        ++done;
        latencies_us.push_back(std::chrono::duration<float, std::micro>(finished - c.started).count());
      }
      next_request(c);
      if (!send_rest(c)) {
        std::cerr << "datashare-get-load: send: " << std::strerror(errno) << "\n";
        return 1;
      }
    }
  }
  const double cpu = cpu_seconds() - cpu0;
  for (auto& c : conns) ::close(c.fd);
  ::close(ep);
  if (done == 0) {
    std::cerr << "datashare-get-load: no answer in " << seconds << " s\n";
    return 1;
  }
  std::sort(latencies_us.begin(), latencies_us.end());
  auto q = [&](double p) {
    return latencies_us[static_cast<std::size_t>(p * static_cast<double>(latencies_us.size() - 1))];
  };
  std::printf("%s requests=%lld seconds=%d rate=%.0f p50_us=%.0f p99_us=%.0f client_cpu_us_per_request=%.2f\n",
              protocol.c_str(), done, seconds, static_cast<double>(done) / seconds, q(0.5), q(0.99),
              cpu * 1e6 / static_cast<double>(done));
  return 0;
}
