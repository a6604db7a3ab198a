#pragma once
// The circuit breaker of one sync policy: closed → open after N consecutive failed owner calls →
// after `open_for`, half-open: exactly one probe call goes through; its success closes the
// circuit, its failure opens it again for another `open_for`.
//
// Time is passed in (a manual clock in tests). Thread-safe: one mutex, held for a few
// instructions; the state is also published in an atomic for lock-free reads (metrics).

#include <atomic>
#include <chrono>
#include <mutex>

namespace datashare::sidecar::proxy {

// The values are what `datashare_sync_circuit_state` exports, ordered by severity: the chart's
// alert (files/alerts.yaml) and dashboard compare with them.
enum class circuit_state { closed = 0, half_open = 1, open = 2 };

const char* to_string(circuit_state s);

class circuit_breaker {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  circuit_breaker(int consecutive_failures, std::chrono::milliseconds open_for)
      : threshold_(consecutive_failures), open_for_(open_for) {}

  // Whether a call may go to the owner now. In half-open state only the first caller gets
  // true (the probe); every call that got true must report on_success or on_failure.
  bool allow(time_point now);
  void on_success();
  void on_failure(time_point now);

  circuit_state state() const { return state_.load(std::memory_order_relaxed); }

 private:
  const int threshold_;
  const std::chrono::milliseconds open_for_;
  std::mutex mu_;
  int failures_ = 0;
  bool probing_ = false;
  time_point open_until_{};
  std::atomic<circuit_state> state_{circuit_state::closed};
};

}  // namespace datashare::sidecar::proxy
