#include "tests/support/test_owner.h"

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/url.h"
#include "tests/support/child_process.h"

namespace datashare::testing {

test_owner::test_owner(const std::string& path_template, int threads, std::string binary) {
  if (binary.empty()) {
    const char* dir = std::getenv("DATASHARE_BINARY_DIR");
    if (dir == nullptr) throw std::runtime_error("DATASHARE_BINARY_DIR is not set: cannot find datashare-test-owner");
    binary = std::string(dir) + "/bin/datashare-test-owner";
  }
  process_ = std::make_unique<child_process>(
      binary, std::vector<std::string>{"--listen", "127.0.0.1:0", "--path", path_template, "--threads",
                                       std::to_string(threads), "--die-with-parent"});
  const std::string prefix = "datashare-test-owner listening on 127.0.0.1:";
  std::optional<std::string> rest;
  for (auto until = steady::now() + 10s; !rest && steady::now() < until;) {
    rest = process_->line_after(prefix, 100ms);
    if (!rest && process_->wait_exit(1ms)) break;  // exited: a bad flag, a port in use
  }
  if (!rest) throw std::runtime_error("datashare-test-owner did not start: " + process_->output());
  port_ = static_cast<std::uint16_t>(std::stoi(*rest));
}

test_owner::~test_owner() = default;

void test_owner::kill() {
  process_->send(SIGKILL);
  process_->wait_exit(10s);
}

void test_owner::signal(int sig) {
  process_->send(sig);
}

http_reply test_owner::call(const std::string& method, const std::string& target, const std::string& body) {
  return http_call(port_, method, target, body);
}

void test_owner::control(const std::string& method, const std::string& target, const std::string& body) {
  auto r = call(method, target, body);
  if (r.status < 200 || r.status > 299) {
    throw std::runtime_error("test owner: " + method + " " + target + " answered " + std::to_string(r.status) + " " +
                             r.body + r.error);
  }
}

void test_owner::delay(std::chrono::milliseconds d) {
  control("POST", "/control/delay?ms=" + std::to_string(d.count()));
}
void test_owner::fail(unsigned status) {
  control("POST", "/control/fail?status=" + std::to_string(status));
}
void test_owner::fail_next(std::uint64_t count, unsigned status) {
  control("POST", "/control/fail-next?count=" + std::to_string(count) + "&status=" + std::to_string(status));
}
void test_owner::recover() {
  control("POST", "/control/recover");
}
void test_owner::reset() {
  control("POST", "/control/reset");
}
void test_owner::seed(const std::string& key, const std::string& raw_body) {
  control("PUT", "/control/data/" + url::percent_encode_segment(key), raw_body);
}

owner_stats test_owner::stats() {
  auto r = call("GET", "/control/stats");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (r.status != 200 || !j.is_object()) throw std::runtime_error("test owner: bad stats " + r.body + r.error);
  return owner_stats{.gets = j.value("gets", 0ULL),
                     .puts = j.value("puts", 0ULL),
                     .deletes = j.value("deletes", 0ULL),
                     .inflight = j.value("inflight", 0ULL),
                     .max_inflight = j.value("max_inflight", 0ULL)};
}

}  // namespace datashare::testing
