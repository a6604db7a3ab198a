#include "sidecar/integration/harness.h"

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "sidecar/kafka/rdkafka_client.h"
#include "tests/support/cluster_env.h"

namespace datashare::sidecar::itest {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

std::string bootstrap() {
  return testing::require_env("DATASHARE_KAFKA_BOOTSTRAP");
}

std::string unique_name(const std::string& prefix) {
  static std::mt19937_64 rng(std::random_device{}());
  return prefix + "." + std::to_string(::getpid()) + "." + std::to_string(rng() % 1000000000);
}

std::string make_temp_dir(const std::string& prefix) {
  auto dir = std::filesystem::temp_directory_path() / unique_name("datashare-" + prefix);
  std::filesystem::create_directories(dir);
  return dir.string();
}

scoped_dir::~scoped_dir() {
  if (std::getenv("DATASHARE_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

// Ports come from 22000-32767: below the kernel's ephemeral range (32768+ by default), so no
// outgoing connection takes the port between this check and the server's bind (binding port 0
// would hand out exactly those ephemeral ports), and apart from 12000-21999 where
// hack/lib/process.sh picks for the shell tests.
std::uint16_t free_port() {
  static std::mutex mu;
  static std::mt19937 rng(std::random_device{}());
  std::lock_guard lock(mu);
  std::uniform_int_distribution<int> pick(22000, 32767);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    auto port = static_cast<std::uint16_t>(pick(rng));
    net::io_context ioc;
    tcp::acceptor a(ioc);
    boost::system::error_code ec;
    a.open(tcp::v4(), ec);
    if (!ec) a.bind(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
    if (!ec) return port;
  }
  throw std::runtime_error("no free port in 22000-32767");
}

void create_topic(const std::string& bootstrap_servers, const std::string& topic, int partitions,
                  const std::vector<std::pair<std::string, std::string>>& config) {
  config::kafka_settings s;
  s.bootstrap_servers = bootstrap_servers;
  auto factory = kafka::make_rdkafka_factory(s);
  std::string error;
  auto admin = factory->make_admin(error);
  if (!admin) throw std::runtime_error(error);
  std::string detail;
  if (auto ec = admin->ensure_topic(topic, partitions, config, std::chrono::seconds(30), detail)) {
    throw std::runtime_error("create topic " + topic + ": " + ec.message() + " " + detail);
  }
}

void add_partitions(const std::string& bootstrap_servers, const std::string& topic, int total) {
  config::kafka_settings s;
  s.bootstrap_servers = bootstrap_servers;
  std::string error;
  auto admin = kafka::make_rdkafka_factory(s)->make_admin(error);
  if (!admin) throw std::runtime_error(error);
  std::string detail;
  if (auto ec = admin->add_partitions(topic, total, std::chrono::seconds(30), detail)) {
    throw std::runtime_error("add partitions to " + topic + ": " + ec.message() + " " + detail);
  }
}

void delete_topic(const std::string& bootstrap_servers, const std::string& topic) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_servers.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new(topic.c_str());
  rd_kafka_DeleteTopics(rk, &dt, 1, nullptr, q);
  rd_kafka_DeleteTopic_destroy(dt);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  std::string failure;
  if (ev == nullptr) {
    failure = "no answer";
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    failure = rd_kafka_event_error_string(ev);
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** res =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    for (size_t i = 0; i < n; ++i) {
      if (rd_kafka_topic_result_error(res[i]) != RD_KAFKA_RESP_ERR_NO_ERROR)
        failure = rd_kafka_err2str(rd_kafka_topic_result_error(res[i]));
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  if (!failure.empty()) throw std::runtime_error("delete topic " + topic + ": " + failure);
}

std::string products_yaml(const std::string& ns) {
  return "{name: products, namespace: " + ns +
         ", key: id, fields: [{name: id, type: string}, {name: name, type: string}, {name: price, type: number}, "
         "{name: supplierEmail, type: string, restricted: true}]}";
}

double metric(std::uint16_t port, const std::string& series) {
  auto text = http_call(port, "GET", "/metrics").body;
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

http_reply http_call(std::uint16_t port, const std::string& method, const std::string& target,
                     const std::string& body) {
  http_reply out;
  try {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.expires_after(std::chrono::seconds(30));
    stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
    req.set(bhttp::field::host, "localhost");
    if (!body.empty()) req.body() = body;
    req.prepare_payload();
    bhttp::write(stream, req);
    beast::flat_buffer buf;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(256 << 20);
    bhttp::read(stream, buf, parser);
    auto& res = parser.get();
    out.status = static_cast<int>(res.result_int());
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(f.value());
    }
    out.body = res.body();
  } catch (const std::exception&) {
    out.status = 0;
  }
  return out;
}

test_producer::test_producer(const std::string& bootstrap_servers) {
  config::kafka_settings s;
  s.bootstrap_servers = bootstrap_servers;
  producer_ = kafka::make_rdkafka_factory(s)->make_producer(
      true,
      [this](const kafka::delivery& d) {
        if (d.error) ++failed_;
      },
      error_);
  if (!producer_ && error_.empty()) error_ = "no producer";
}

std::error_code test_producer::produce(const std::string& topic, const std::string& key, const std::string& value,
                                       const std::vector<kafka::header>& headers) {
  std::error_code ec;
  for (int tries = 0; tries < 1000; ++tries) {
    ec = producer_->produce(topic, key, value, headers, 0, 0);
    if (ec != kafka::make_error(kafka::kErrQueueFull)) break;
    producer_->poll(std::chrono::milliseconds(10));
  }
  return ec;
}

std::string sidecar_binary() {
  const char* dir = std::getenv("DATASHARE_BINARY_DIR");
  if (dir == nullptr) throw std::runtime_error("DATASHARE_BINARY_DIR is not set (run through ctest)");
  return std::string(dir) + "/bin/datashare-sidecar";
}

long env_size(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n <= 0) throw std::runtime_error(std::string(name) + "=" + v + ": not a number above 0");
  return n;
}

void chaos_line(const std::string& scenario, const std::vector<std::pair<std::string, std::string>>& figures) {
  std::string line = "CHAOS " + scenario;
  for (const auto& [k, v] : figures) line += " " + k + "=" + v;
  std::cout << line << std::endl;
}

sidecar_process::sidecar_process(std::string dir, const std::string& config_yaml)
    : dir_(std::move(dir)), config_path_(dir_ + "/sidecar.yaml"), log_path_(dir_ + "/sidecar.log") {
  std::ofstream(config_path_) << config_yaml;
}

sidecar_process::~sidecar_process() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void sidecar_process::start() {
  std::string binary = sidecar_binary();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Dies with the test: a killed test (timeout, interrupted run) leaves no sidecar behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 2);
      ::dup2(fd, 1);
    }
    ::execl(binary.c_str(), binary.c_str(), "--config", config_path_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  pid_ = pid;
  ++restarts_;
}

void sidecar_process::kill(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

int sidecar_process::wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

std::optional<int> sidecar_process::wait_for(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool sidecar_process::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string sidecar_process::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

command_result run_command(const std::string& command) {
  command_result r;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

private_broker::private_broker() {
  const char* src = std::getenv("DATASHARE_SOURCE_DIR");
  script_ = std::string(src != nullptr ? src : ".") + "/hack/kafka-broker.sh";
  auto r = run_command(script_ + " up " + dir_.path() + "/kafka 2>&1");
  auto pos = r.output.find("DATASHARE_KAFKA_BOOTSTRAP=");
  if (r.exit_code != 0 || pos == std::string::npos)
    throw std::runtime_error("private broker did not start:\n" + r.output);
  bootstrap_ = r.output.substr(pos + 26);
  bootstrap_ = bootstrap_.substr(0, bootstrap_.find_first_of("\r\n"));
  // The broker runs detached (setsid): if this test is killed (a ctest timeout, an interrupted
  // run), no destructor stops it. A watchdog does, once this process is gone.
  run_command("nohup bash -c 'while kill -0 " + std::to_string(::getpid()) + " 2>/dev/null; do sleep 2; done; " +
              script_ + " down " + dir_.path() + "/kafka; rm -rf " + dir_.path() + "' >/dev/null 2>&1 &");
}

private_broker::~private_broker() {
  run_command(script_ + " down " + dir_.path() + "/kafka >/dev/null 2>&1");
}

bool private_broker::action(const std::string& what) {
  return run_command(script_ + " " + what + " " + dir_.path() + "/kafka 2>&1").exit_code == 0;
}

}  // namespace datashare::sidecar::itest
