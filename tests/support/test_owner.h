#pragma once
// `datashare-test-owner` (tests/support/test_owner/) as a child process of a test: started on a
// free port, driven through its control API, killed when the object goes (and when the test
// process dies: --die-with-parent).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "tests/support/http_client.h"

namespace datashare::testing {

class child_process;

struct owner_stats {
  std::uint64_t gets = 0, puts = 0, deletes = 0, inflight = 0, max_inflight = 0;
};

// Not thread-safe to construct or destroy; the calls are (each is its own connection).
class test_owner {
 public:
  // The binary is $DATASHARE_BINARY_DIR/bin/datashare-test-owner unless `binary` is given.
  // Throws std::runtime_error when it cannot start or does not report its port within 10 s.
  explicit test_owner(const std::string& path_template = "/products/{key}", int threads = 2, std::string binary = "");
  ~test_owner();
  test_owner(const test_owner&) = delete;
  test_owner& operator=(const test_owner&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Control API; each throws std::runtime_error when the owner does not answer 2xx.
  void delay(std::chrono::milliseconds d);
  void fail(unsigned status);  // 0: close connections without answering
  void fail_next(std::uint64_t count, unsigned status);
  void recover();                                                  // stop failing (delay and data stay)
  void reset();                                                    // data, delay, failures and counters
  void seed(const std::string& key, const std::string& raw_body);  // stored as given, not counted
  owner_stats stats();

  // A plain call, e.g. call("GET", "/products/p1").
  http_reply call(const std::string& method, const std::string& target, const std::string& body = "");

  // Stops the process (SIGKILL): the owner is down, its port refuses connections.
  void kill();
  // Sends a signal: SIGSTOP makes the owner hang (connections are accepted by the kernel, nothing
  // answers: a partition as the caller sees it), SIGCONT resumes it.
  void signal(int sig);

 private:
  void control(const std::string& method, const std::string& target, const std::string& body = "");
  std::unique_ptr<child_process> process_;
  std::uint16_t port_ = 0;
};

}  // namespace datashare::testing
