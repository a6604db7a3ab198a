#pragma once
// A blocking HTTP/1.1 client for one origin ("http://host:port"), on Boost.Beast: keep-alive
// connections kept in a pool and reused, a deadline for every call (connect, write and read
// together), one retry on a fresh connection when a reused one turns out closed by the peer.
// Used where a thread may wait: the gateway's calls to participants, a participant's calls to
// the owner and to the coordinator. Only http:// (the calls stay inside the cluster network).
//
// Threading: call() from any number of threads at once; each call takes a connection of its
// own from the pool (a connection owns its io_context and is used by one thread at a time).

#include <boost/beast/http/verb.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace datashare::sidecar::http {

struct client_reply {
  unsigned status = 0;
  std::string body;
};

struct origin {
  std::string host;
  std::string port;
};

// "http://host:port[/]" → {host, port}; port 80 when absent. nullopt for anything else
// (https, a path, an empty host).
std::optional<origin> parse_origin(std::string_view url);

class client {
 public:
  explicit client(origin o, std::size_t max_idle = 64);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Sends `method target` with `body` (JSON when not empty) and reads the answer before
  // `deadline`. An error (timeout, refused, reset, malformed answer) leaves `out` unspecified.
  std::error_code call(boost::beast::http::verb method, std::string_view target, std::string_view body,
                       std::chrono::steady_clock::time_point deadline, client_reply& out);

  const origin& where() const { return origin_; }

 private:
  struct connection;
  std::unique_ptr<connection> take();
  void give_back(std::unique_ptr<connection> c);
  boost::system::error_code attempt(connection& c, boost::beast::http::verb method, std::string_view target,
                                    std::string_view body, std::chrono::steady_clock::time_point deadline,
                                    client_reply& out);

  origin origin_;
  std::size_t max_idle_;
  std::mutex mu_;  // guards idle_
  std::vector<std::unique_ptr<connection>> idle_;
};

}  // namespace datashare::sidecar::http
