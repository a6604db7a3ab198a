#pragma once
// An in-memory http_transport for unit tests: answers from a scripted queue of responses and
// records every request. Streams deliver their scripted lines, then end (or block until
// stopped, to model a watch that stays open).

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "operator/kube/error.h"
#include "operator/kube/http.h"

namespace datashare::kube::testing {

struct scripted_response {
  int status = 200;
  std::string body;
  std::map<std::string, std::string> headers;
  std::vector<std::string> lines;  // for streams: the body's lines
  bool transport_failure = false;  // throw errc::transport instead of answering
  bool hold_open = false;          // for streams: after the lines, wait until stopped
  std::string match;               // answers only a request whose target contains this ("" any)
};

// Thread-safe.
class fake_transport final : public http_transport {
 public:
  void push(scripted_response r) {
    std::lock_guard lock(mu_);
    script_.push_back(std::move(r));
    cv_.notify_all();
  }

  std::vector<http_request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  http_response send(const http_request& request) override {
    scripted_response r = next(request);
    if (r.transport_failure) {
      throw api_error(errc::transport, 0, "TransportError", "scripted failure", request.method + " " + request.target);
    }
    return {r.status, r.body, r.headers};
  }

  http_response stream_lines(const http_request& request, const std::function<bool(std::string_view)>& on_line,
                             std::stop_token stop) override {
    scripted_response r = next(request, &stop);
    if (stop.stop_requested()) return {};
    if (r.transport_failure) {
      throw api_error(errc::transport, 0, "TransportError", "scripted failure", request.method + " " + request.target);
    }
    if (r.status < 200 || r.status >= 300) return {r.status, r.body, r.headers};
    for (const auto& line : r.lines) {
      if (stop.stop_requested() || !on_line(line)) return {r.status, "", r.headers};
    }
    if (r.hold_open) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, stop, [] { return false; });
    }
    return {r.status, "", r.headers};
  }

  std::string host() const override { return "https://fake"; }

 private:
  // The next scripted answer; with nothing scripted a stream waits (until stopped) and a plain
  // request fails the test loudly.
  scripted_response next(const http_request& request, std::stop_token* stop = nullptr) {
    std::unique_lock lock(mu_);
    requests_.push_back(request);
    if (stop != nullptr) {
      // The stop_token overload wakes on stop without a lost-wake-up window.
      cv_.wait(lock, *stop, [&] { return find(request) != script_.end(); });
      if (find(request) == script_.end()) return {};
    }
    auto it = find(request);
    if (it == script_.end()) return {599, "no scripted response for " + request.method + " " + request.target};
    scripted_response r = std::move(*it);
    script_.erase(it);
    return r;
  }

  std::deque<scripted_response>::iterator find(const http_request& request) {
    for (auto it = script_.begin(); it != script_.end(); ++it) {
      if (it->match.empty() || request.target.find(it->match) != std::string::npos) return it;
    }
    return script_.end();
  }

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<scripted_response> script_;
  std::vector<http_request> requests_;
};

}  // namespace datashare::kube::testing
