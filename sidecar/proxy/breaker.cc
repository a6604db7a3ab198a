#include "sidecar/proxy/breaker.h"

namespace datashare::sidecar::proxy {

const char* to_string(circuit_state s) {
  switch (s) {
    case circuit_state::closed:
      return "closed";
    case circuit_state::open:
      return "open";
    case circuit_state::half_open:
      return "half-open";
  }
  return "?";
}

bool circuit_breaker::allow(time_point now) {
  std::lock_guard lock(mu_);
  switch (state_.load(std::memory_order_relaxed)) {
    case circuit_state::closed:
      return true;
    case circuit_state::open:
      if (now < open_until_) return false;
      state_.store(circuit_state::half_open, std::memory_order_relaxed);
      probing_ = true;
      return true;
    case circuit_state::half_open:
      if (probing_) return false;
      probing_ = true;
      return true;
  }
  return false;
}

void circuit_breaker::on_success() {
  std::lock_guard lock(mu_);
  failures_ = 0;
  probing_ = false;
  state_.store(circuit_state::closed, std::memory_order_relaxed);
}

void circuit_breaker::on_failure(time_point now) {
  std::lock_guard lock(mu_);
  const auto s = state_.load(std::memory_order_relaxed);
  // A call allowed before the circuit opened, failing late, changes nothing: it is open already.
  const bool opens = s == circuit_state::half_open || (s == circuit_state::closed && ++failures_ >= threshold_);
  probing_ = false;
  if (!opens) return;
  failures_ = 0;
  open_until_ = now + open_for_;
  state_.store(circuit_state::open, std::memory_order_relaxed);
}

}  // namespace datashare::sidecar::proxy
