#pragma once
// A non-blocking HTTP/1.1 client for one origin ("http://host:port") on Boost.Beast, driven by an
// io_context someone else runs (the gateway's I/O threads): no thread waits for an answer. Keep-
// alive connections are pooled and reused; every call has a deadline (connect, write and read
// together, a tcp_stream timer); a call that fails on a reused connection before any byte of the
// answer (the peer closed it while idle) is sent once more on a fresh connection. Every request
// sent through it must be idempotent (the gateway's calls carry transaction ids).
//
// Threading: call() from any thread; `done` runs once, on one of the io_context's threads (on
// the connection's strand), or inside call() when the origin cannot even be resolved. The
// client must outlive its pending calls: stop and join the io_context before destroying it.

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "sidecar/http/client.h"

namespace datashare::sidecar::http {

class async_client {
 public:
  // `ec` is std::errc::timed_out past the deadline, connection_refused, or the I/O error; `reply`
  // holds the status and body when `ec` is empty.
  using callback = std::function<void(std::error_code ec, client_reply reply)>;

  async_client(boost::asio::io_context& ioc, origin o, std::size_t max_idle = 256);
  ~async_client();
  async_client(const async_client&) = delete;
  async_client& operator=(const async_client&) = delete;

  // A non-empty body goes as `content_type`, which must outlive the call (a literal).
  void call(boost::beast::http::verb method, std::string target, std::string body,
            std::chrono::steady_clock::time_point deadline, callback done,
            std::string_view content_type = "application/json");

  const origin& where() const { return origin_; }
  boost::asio::io_context& context() const { return ioc_; }

  class connection;

 private:
  friend class connection;
  std::shared_ptr<connection> take();
  void give_back(std::shared_ptr<connection> c);

  boost::asio::io_context& ioc_;
  origin origin_;
  std::string host_header_;
  std::size_t max_idle_;
  std::mutex mu_;  // guards idle_
  std::vector<std::shared_ptr<connection>> idle_;
};

}  // namespace datashare::sidecar::http
