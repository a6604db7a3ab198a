#pragma once
// The seam between the sync proxy and the owner service: one GET, answered once, by a deadline.
// The real client is http_owner_client (Boost.Beast, keep-alive pool); unit tests use a fake.

#include <chrono>
#include <functional>
#include <string>

namespace datashare::sidecar::proxy {

struct fetch_result {
  enum class kind {
    response,       // an HTTP response arrived (any status)
    timeout,        // the deadline passed first
    connect_error,  // resolve/connect failed (owner down)
    io_error,       // the connection broke before a whole response (closed, reset, malformed HTTP)
  };
  kind outcome = kind::response;
  unsigned status = 0;
  std::string body;
  std::string detail;  // why, for kinds other than response
};

class owner_client {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using callback = std::function<void(fetch_result)>;
  virtual ~owner_client() = default;
  // GET `target` ("/products/p%201"); `done` is called exactly once, from any thread (the
  // caller's included, before get returns), by about `deadline`.
  virtual void get(const std::string& target, time_point deadline, callback done) = 0;
};

}  // namespace datashare::sidecar::proxy
