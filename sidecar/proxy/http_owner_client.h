#pragma once
// owner_client on Boost.Asio and Beast's parser: HTTP/1.1 GETs to one origin over a pool of
// keep-alive connections. A connection is taken from the pool (or opened: resolve, connect,
// TCP_NODELAY), used for one request, and given back when the response allows keep-alive. A
// request that fails on a reused connection before any response byte (the owner closed an idle
// connection) is sent once more on a new one. One deadline timer per request covers resolve,
// connect, send and the whole answer; past it the connection is closed, not pooled.
//
// Threading: a call made on an HTTP server I/O thread (http::server::current_context()) runs on
// that thread's io_context, with connections pooled per io_context, so a proxied read never
// leaves its connection's thread; a call from any other thread runs on the given io_context.
// Each io_context used must be run by one thread (the server's are): connections have no strand.
// get() may be called from any thread. The client must outlive its pending requests (the
// io_contexts are stopped and joined before it goes).

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sidecar/proxy/owner_client.h"

namespace datashare::sidecar::proxy {

class http_owner_client : public owner_client {
 public:
  http_owner_client(boost::asio::io_context& ioc, std::string host, std::uint16_t port, std::size_t max_idle = 64);
  ~http_owner_client() override;

  void get(const std::string& target, time_point deadline, callback done) override;

  class connection;

 private:
  friend class connection;
  std::shared_ptr<connection> take(boost::asio::io_context& ioc);
  void give_back(boost::asio::io_context& ioc, std::shared_ptr<connection> c);

  boost::asio::io_context& ioc_;
  std::string host_;
  std::string port_;
  std::string host_header_;
  std::size_t max_idle_;
  std::mutex mu_;  // guards idle_
  // Idle keep-alive connections by the io_context they run on (a handful: one per I/O thread).
  std::vector<std::pair<boost::asio::io_context*, std::vector<std::shared_ptr<connection>>>> idle_;
};

}  // namespace datashare::sidecar::proxy
