#pragma once
// What the sidecar's integration tests share: the real broker's address, topics, a
// datashare-sidecar process started from a config, HTTP calls to it, and shell commands (kcat).
// Everything is bounded in time; a missing broker fails the test (tests/support/cluster_env.h).

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "sidecar/kafka/client.h"

namespace datashare::sidecar::itest {

std::string bootstrap();  // DATASHARE_KAFKA_BOOTSTRAP, or the test fails
std::string unique_name(const std::string& prefix);
std::string make_temp_dir(const std::string& prefix);

// A temporary directory removed with everything in it at the end of the scope (kept when
// DATASHARE_KEEP_TEST_DIRS is set, to look at a failure).
class scoped_dir {
 public:
  explicit scoped_dir(const std::string& prefix) : path_(make_temp_dir(prefix)) {}
  ~scoped_dir();
  scoped_dir(const scoped_dir&) = delete;
  scoped_dir& operator=(const scoped_dir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};
std::uint16_t free_port();

// Creates a topic on `bootstrap_servers`; throws on failure.
void create_topic(const std::string& bootstrap_servers, const std::string& topic, int partitions,
                  const std::vector<std::pair<std::string, std::string>>& config = {});

// Grows a topic to `total` partitions through Kafka's admin API; throws on failure.
void add_partitions(const std::string& bootstrap_servers, const std::string& topic, int total);

// Deletes a topic through Kafka's admin API; throws on failure.
void delete_topic(const std::string& bootstrap_servers, const std::string& topic);

// "products" with fields id (key), name, price and a restricted supplierEmail, as YAML.
std::string products_yaml(const std::string& ns = "catalog");

struct http_reply {
  int status = 0;                              // 0: no answer (connection refused, ...)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

http_reply http_call(std::uint16_t port, const std::string& method, const std::string& target,
                     const std::string& body = "");

// The value of one series in the /metrics served on `port` ("name{labels}", labels in the order
// prometheus-cpp writes them: sorted), -1 when absent.
double metric(std::uint16_t port, const std::string& series);

// A datashare-sidecar child process; killed with SIGKILL on destruction if still running.
class sidecar_process {
 public:
  sidecar_process(std::string dir, const std::string& config_yaml);
  ~sidecar_process();
  void start();
  void kill(int signal);
  int wait();  // exit status (128 + signal when killed)
  // The exit status once the process has exited, or nothing when it still runs after `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  bool running();
  std::string log() const;  // its stderr so far
  const std::string& config_path() const { return config_path_; }

 private:
  std::string dir_, config_path_, log_path_;
  pid_t pid_ = -1;
  int restarts_ = 0;
};

// Polls `pred` every 50 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

struct command_result {
  int exit_code = -1;
  std::string output;  // stdout
};
command_result run_command(const std::string& command);

std::string sidecar_binary();

// The tests' own source of events: an idempotent librdkafka producer that counts failed
// deliveries. produce() polls and retries while librdkafka's queue is full.
class test_producer {
 public:
  explicit test_producer(const std::string& bootstrap_servers);
  // Empty when the producer was made; otherwise why not.
  const std::string& error() const { return error_; }
  std::error_code produce(const std::string& topic, const std::string& key, const std::string& value,
                          const std::vector<kafka::header>& headers = {});
  void poll(std::chrono::milliseconds timeout) { producer_->poll(timeout); }
  std::error_code flush(std::chrono::milliseconds timeout) { return producer_->flush(timeout); }
  int failed_deliveries() const { return failed_.load(); }

 private:
  std::string error_;
  std::atomic<int> failed_{0};
  std::unique_ptr<kafka::producer> producer_;
};

// A broker of the test's own (hack/kafka-broker.sh), for the faults a shared broker must never
// see: stopped, started again, frozen (SIGSTOP: connections stay open, nothing answers), thawed.
// Removed at the end whatever happens (a watchdog stops it once the test process is gone).
class private_broker {
 public:
  private_broker();  // throws when the broker does not start
  ~private_broker();
  private_broker(const private_broker&) = delete;
  private_broker& operator=(const private_broker&) = delete;
  const std::string& bootstrap() const { return bootstrap_; }
  bool stop() { return action("stop"); }
  bool start() { return action("start"); }
  bool freeze() { return action("freeze"); }
  bool thaw() { return action("thaw"); }

 private:
  bool action(const std::string& what);
  scoped_dir dir_{"broker"};
  std::string script_, bootstrap_;
};

// A size taken from the environment (the chaos suite, hack/chaos.sh, runs these tests at the
// issue's full sizes), or `fallback` when the variable is unset; throws when it is not a number
// above 0.
long env_size(const char* name, long fallback);

// The one summary line a chaos scenario prints ("CHAOS <scenario> k=v ..."), read by hack/chaos.sh.
void chaos_line(const std::string& scenario, const std::vector<std::pair<std::string, std::string>>& figures);

}  // namespace datashare::sidecar::itest
