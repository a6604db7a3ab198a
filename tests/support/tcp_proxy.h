#pragma once
// A TCP proxy on 127.0.0.1 for tests that need to cut a connection the code under test holds
// (a watch stream) without touching the server behind it. TLS passes through untouched.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace datashare::testing {

// Owns one I/O thread. All members are thread-safe.
class tcp_proxy {
 public:
  // Forwards connections on a free local port to target_host:target_port.
  tcp_proxy(std::string target_host, uint16_t target_port);
  ~tcp_proxy();

  uint16_t port() const { return port_; }
  // Closes every open connection (both sides).
  void cut();
  // While refusing, new connections are closed as soon as they are accepted.
  void set_refusing(bool refusing);
  uint64_t accepted() const { return accepted_.load(); }

 private:
  struct link;
  void accept();

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::endpoint target_;
  uint16_t port_;
  std::atomic<bool> refusing_{false};
  std::atomic<uint64_t> accepted_{0};
  std::mutex mu_;
  std::set<std::shared_ptr<link>> links_;
  std::thread thread_;
};

}  // namespace datashare::testing
