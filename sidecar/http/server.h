#pragma once
// A small HTTP/1.1 server on Boost.Beast for the sidecar's local API: keep-alive, one request at
// a time per connection (answers in order), bounded header and body sizes, an idle timeout, and a
// 400 with `Connection: close` for anything that does not parse. It never throws out of a
// handler's way: a malformed request is the client's problem, never a crash.
//
// Threading: each of the `threads` I/O threads runs an io_context of its own, and a connection
// stays on the one it was accepted onto (round robin): its handlers and completions run on that
// thread alone, with no strand, no lock shared with the other threads and no hand-off between
// them (one io_context run by several threads made every completion a mutex and a wake-up of
// the other thread: a fifth of the read path's time, P2). A handler must answer exactly once
// through its responder, immediately or later from any thread (the publisher answers after its
// fsync). The answer is written as one buffer: status line, headers and body.

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace datashare::sidecar::http {

using request = boost::beast::http::request<boost::beast::http::string_body>;

// Content type and header names are string literals (static storage): a GET's answer then
// allocates only its body and header values.
struct response {
  unsigned status = 200;
  std::string body;
  std::string_view content_type = "application/json";
  std::vector<std::pair<std::string_view, std::string>> headers;
};

class session;

// Answers one request; copyable, call exactly once, from any thread.
class responder {
 public:
  explicit responder(std::shared_ptr<session> s) : s_(std::move(s)) {}
  // Hands the answer to `sink` instead of a connection (in-process callers: the fuzz targets).
  explicit responder(std::function<void(response)> sink) : sink_(std::move(sink)) {}
  void operator()(response r) const;
  // Closes the connection without answering (test services simulating a crashed peer).
  void close() const;

 private:
  std::shared_ptr<session> s_;
  std::function<void(response)> sink_;
};

using handler = std::function<void(const request&, responder)>;

struct limits {
  std::uint32_t header_bytes = 16 << 10;
  std::uint64_t body_bytes = 1 << 20;
  std::chrono::seconds idle_timeout{60};
  // After an I/O thread has run a handler it keeps polling its sockets (non-blocking) for this
  // long before it sleeps in epoll_wait: CPU traded for latency where waking a sleeping thread is
  // slow (a virtual machine that halts idle vCPUs; P4 in docs/benchmarks.md). 0: never poll.
  std::chrono::microseconds busy_poll{0};
};

class server {
 public:
  explicit server(int threads, limits l = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds `address:port` (0: any free port) and serves it with `h` once start() runs.
  std::error_code listen(const std::string& address, std::uint16_t port, handler h, std::uint16_t& bound_port);
  void start();
  void stop();

  // The first I/O thread's context, for work that should run on an I/O thread and skip a thread
  // hand-off (the sync proxy's owner calls). Handlers queued there at stop() are destroyed with
  // the server.
  boost::asio::io_context& context() { return *contexts_.front(); }
  // Every I/O thread's context, in order (a client per thread: the gateway's participant calls).
  std::vector<boost::asio::io_context*> contexts() const {
    std::vector<boost::asio::io_context*> out;
    for (const auto& c : contexts_) out.push_back(c.get());
    return out;
  }

  // The io_context of the I/O thread this is called on (any server's), or nullptr off the I/O
  // threads. Work started from a handler on it stays on the connection's thread: the sync
  // proxy's owner calls (an owner call on the first thread for a connection of the second cost
  // two cross-thread wake-ups per proxied read, P4).
  static boost::asio::io_context* current_context();

 private:
  class listener;
  boost::asio::io_context& context_for(std::size_t turn);

  limits limits_;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::vector<std::shared_ptr<listener>> listeners_;
  std::vector<std::thread> workers_;
};

}  // namespace datashare::sidecar::http
