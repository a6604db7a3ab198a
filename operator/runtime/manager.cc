#include "operator/runtime/manager.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>

#include <csignal>
#include <thread>

#include "common/log.h"
#include "sidecar/http/server.h"

namespace datashare::runtime {
namespace {

// ":8080" → ("0.0.0.0", 8080); "127.0.0.1:0" → ("127.0.0.1", 0).
bool parse_bind(const std::string& text, std::string& host, uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  try {
    int p = std::stoi(text.substr(colon + 1));
    if (p < 0 || p > 65535) return false;
    port = static_cast<uint16_t>(p);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

std::string path_of(const sidecar::http::request& req) {
  std::string target(req.target());
  return target.substr(0, target.find('?'));
}

}  // namespace

manager::manager(std::shared_ptr<prometheus::Registry> registry, manager_options options)
    : registry_(std::move(registry)), options_(std::move(options)) {}

manager::~manager() {
  request_stop();
  shut_down();
}

informer& manager::add_informer(std::unique_ptr<informer> inf) {
  return *informers_.emplace_back(std::move(inf));
}

controller& manager::add_controller(std::unique_ptr<controller> c) {
  return *controllers_.emplace_back(std::move(c));
}

void manager::add_readiness_check(std::string name, std::function<bool()> check) {
  checks_.emplace_back(std::move(name), std::move(check));
}

bool manager::ready() const {
  for (const auto& inf : informers_) {
    if (!inf->has_synced()) return false;
  }
  for (const auto& [name, check] : checks_) {
    if (!check()) return false;
  }
  return true;
}

void manager::request_stop() {
  stop_.request_stop();
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

void manager::serve() {
  server_ = std::make_unique<sidecar::http::server>(1);
  auto handler = [this](const sidecar::http::request& req, sidecar::http::responder respond) {
    const std::string path = path_of(req);
    sidecar::http::response r;
    r.content_type = "text/plain; charset=utf-8";
    if (path == "/healthz" || path == "/livez") {
      r.body = "ok";
    } else if (path == "/readyz") {
      const bool ok = ready();
      r.status = ok ? 200 : 503;
      r.body = ok ? "ok" : "caches not synced";
    } else if (path == "/metrics") {
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = prometheus::TextSerializer().Serialize(registry_->Collect());
    } else {
      r.status = 404;
      r.body = "not found";
    }
    respond(std::move(r));
  };
  auto listen = [&](const std::string& what, const std::string& bind, std::atomic<uint16_t>& bound) {
    if (bind.empty() || bind == "0") return;
    std::string host;
    uint16_t port = 0;
    if (!parse_bind(bind, host, port)) throw std::invalid_argument(what + ": not host:port: " + bind);
    uint16_t actual = 0;
    if (auto ec = server_->listen(host, port, handler, actual)) {
      throw std::runtime_error(what + ": cannot listen on " + bind + ": " + ec.message());
    }
    bound = actual;
    log::info("serving", {{"what", what}, {"address", host + ":" + std::to_string(actual)}});
  };
  listen("metrics", options_.metrics_bind_address, metrics_port_);
  listen("health probes", options_.health_probe_bind_address, health_port_);
  server_->start();
}

int manager::run() {
  serve();
  for (auto& inf : informers_) inf->start();

  // Caches first: a controller that reconciles from a half-filled cache would delete what it
  // has not seen yet.
  const auto deadline = std::chrono::steady_clock::now() + options_.cache_sync_timeout;
  for (auto& inf : informers_) {
    while (!stop_.stop_requested() && !inf->wait_for_sync(std::chrono::milliseconds(200))) {
      if (std::chrono::steady_clock::now() > deadline) {
        log::error("caches did not sync in time",
                   {{"timeout", std::to_string(options_.cache_sync_timeout.count()) + "s"}});
        shut_down();
        return 1;
      }
    }
  }
  if (stop_.stop_requested()) {
    shut_down();
    return 0;
  }
  log::info("caches synced", {{"informers", std::to_string(informers_.size())}});

  if (options_.acquire_leadership) {
    auto lost = [this] {
      log::error("leadership lost: stopping so that another replica takes over");
      lost_leadership_ = true;
      request_stop();
    };
    if (!options_.acquire_leadership(stop_.get_token(), lost)) {
      shut_down();
      return 0;
    }
  }
  leading_ = true;
  for (auto& c : controllers_) c->start();

  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return stop_.stop_requested(); });
  }
  shut_down();
  return lost_leadership_ ? 1 : 0;
}

void manager::shut_down() {
  // Stop intake everywhere first, then wait for the in-flight reconciles within one deadline.
  const auto deadline = std::chrono::steady_clock::now() + options_.graceful_shutdown_timeout;
  bool clean = true;
  for (auto& c : controllers_) {
    auto left = std::max(std::chrono::steady_clock::duration::zero(), deadline - std::chrono::steady_clock::now());
    clean &= c->stop(left);
  }
  for (auto& inf : informers_) inf->stop();
  if (leading_.exchange(false) && options_.release_leadership) options_.release_leadership();
  if (server_) {
    server_->stop();
    server_.reset();
  }
  if (!clean) log::warn("graceful shutdown timed out; some reconciles were still running");
}

void stop_on_signals(std::function<void()> on_signal) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set, on_signal = std::move(on_signal)] {
    int sig = 0;
    sigwait(&set, &sig);
    log::info("signal received, shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    on_signal();
    sigwait(&set, &sig);
    log::warn("second signal: exiting now");
    std::_Exit(1);
  }).detach();
}

std::function<void(const std::string&, int)> rest_client_metrics(prometheus::Registry& registry,
                                                                 const std::string& host) {
  auto& family = prometheus::BuildCounter()
                     .Name("rest_client_requests_total")
                     .Help("Number of HTTP requests, partitioned by status code, method, and host.")
                     .Register(registry);
  return [&family, host](const std::string& method, int code) {
    family
        .Add({{"code", code == 0 ? std::string("<error>") : std::to_string(code)}, {"method", method}, {"host", host}})
        .Increment();
  };
}

}  // namespace datashare::runtime
