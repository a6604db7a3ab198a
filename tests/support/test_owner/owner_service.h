#pragma once
// The logic of `datashare-test-owner`: a small owner service for tests and benchmarks, serving
// JSON objects under a path template such as /products/{key}, that a test can slow down, make
// fail, seed and count through a control API (README.md lists it).
//
// Threading: handle() runs on the HTTP server's I/O threads, concurrently. Delays are async
// timers on the service's own io_context (`timer_threads` threads), so a slow owner never
// serializes its callers. All state is behind one mutex; the service must outlive the server.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sidecar/http/server.h"

namespace datashare::testing {

// "/products/{key}" split around its one `{key}`; nullopt (with `error`) when the template is
// not a path with exactly one `{key}`.
struct path_template {
  std::string prefix;
  std::string suffix;
  static std::optional<path_template> parse(std::string_view text, std::string& error);
  // The percent-decoded key of `path`, nullopt when `path` does not match the template.
  std::optional<std::string> match(std::string_view path) const;
};

class owner_service {
 public:
  owner_service(path_template path, int timer_threads);
  ~owner_service();
  owner_service(const owner_service&) = delete;
  owner_service& operator=(const owner_service&) = delete;

  void handle(const sidecar::http::request& req, const sidecar::http::responder& respond);

  // Stores `value` under `key` as a data PUT of it would (the caller checked it is a JSON
  // object), from inside the process: not counted, never delayed or failed. The shop's Product
  // service (examples/shop) stores what it publishes this way.
  void store(const std::string& key, std::string value);

 private:
  struct failure {
    unsigned status = 0;  // 0: close the connection without answering
  };
  void handle_control(const sidecar::http::request& req, std::string_view path, std::string_view query,
                      const sidecar::http::responder& respond);
  // Answers a data request once its delay has passed (the failure was decided on arrival).
  void finish(const sidecar::http::request& req, const std::string& key, std::optional<failure> fail,
              const sidecar::http::responder& respond);

  path_template path_;
  boost::asio::io_context timers_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;

  std::mutex mu_;
  std::map<std::string, std::string, std::less<>> data_;
  std::chrono::milliseconds delay_{0};
  std::optional<failure> fail_all_;
  std::uint64_t fail_next_count_ = 0;
  failure fail_next_;
  std::uint64_t gets_ = 0, puts_ = 0, deletes_ = 0, inflight_ = 0, max_inflight_ = 0;
};

}  // namespace datashare::testing
