#include "operator/runtime/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace datashare::runtime {

item_exponential_rate_limiter::item_exponential_rate_limiter(clock::duration base, clock::duration max)
    : base_(base), max_(max) {
  if (base <= clock::duration::zero() || max < base) {
    throw std::invalid_argument("item_exponential_rate_limiter: need 0 < base <= max");
  }
}

clock::duration item_exponential_rate_limiter::when(const std::string& key) {
  int exponent = 0;
  {
    std::lock_guard guard(mu_);
    int& failures = failures_[key];
    exponent = failures;
    if (failures < std::numeric_limits<int>::max()) ++failures;
  }
  // In floating point so that large exponents saturate at max_ instead of overflowing the shift.
  const double backoff = static_cast<double>(base_.count()) * std::ldexp(1.0, exponent);
  if (backoff >= static_cast<double>(max_.count())) return max_;
  return clock::duration(static_cast<clock::duration::rep>(backoff));
}

void item_exponential_rate_limiter::forget(const std::string& key) {
  std::lock_guard guard(mu_);
  failures_.erase(key);
}

int item_exponential_rate_limiter::num_requeues(const std::string& key) const {
  std::lock_guard guard(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

bucket_rate_limiter::bucket_rate_limiter(double qps, int burst, const clock& time_source)
    : clock_(time_source), qps_(qps), burst_(burst), tokens_(burst), last_(time_source.now()) {
  if (!(qps > 0.0) || burst < 1) throw std::invalid_argument("bucket_rate_limiter: need qps > 0 and burst >= 1");
}

clock::duration bucket_rate_limiter::when(const std::string& /*key*/) {
  constexpr double kNanosPerSecond = 1e9;
  std::lock_guard guard(mu_);
  const clock::time_point now = clock_.now();
  if (now > last_) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_);
    tokens_ = std::min(burst_, tokens_ + static_cast<double>(elapsed.count()) * qps_ / kNanosPerSecond);
    last_ = now;
  }
  tokens_ -= 1.0;
  if (tokens_ >= 0.0) return clock::duration::zero();
  // Rounded up: a caller that waits this long always finds its token refilled.
  const double wait_nanos = std::ceil(-tokens_ * kNanosPerSecond / qps_);
  return std::chrono::duration_cast<clock::duration>(
      std::chrono::nanoseconds(static_cast<std::chrono::nanoseconds::rep>(wait_nanos)));
}

void bucket_rate_limiter::forget(const std::string& /*key*/) {}

int bucket_rate_limiter::num_requeues(const std::string& /*key*/) const {
  return 0;
}

max_of_rate_limiter::max_of_rate_limiter(std::vector<std::unique_ptr<rate_limiter>> limiters)
    : limiters_(std::move(limiters)) {
  if (limiters_.empty()) throw std::invalid_argument("max_of_rate_limiter: no limiters");
  for (const auto& limiter : limiters_) {
    if (!limiter) throw std::invalid_argument("max_of_rate_limiter: null limiter");
  }
}

clock::duration max_of_rate_limiter::when(const std::string& key) {
  clock::duration longest = clock::duration::zero();
  // Every limiter is asked, not only until one gives the maximum: each call is a failure they count.
  for (const auto& limiter : limiters_) longest = std::max(longest, limiter->when(key));
  return longest;
}

void max_of_rate_limiter::forget(const std::string& key) {
  for (const auto& limiter : limiters_) limiter->forget(key);
}

int max_of_rate_limiter::num_requeues(const std::string& key) const {
  int most = 0;
  for (const auto& limiter : limiters_) most = std::max(most, limiter->num_requeues(key));
  return most;
}

std::unique_ptr<rate_limiter> default_controller_rate_limiter(const clock& time_source) {
  std::vector<std::unique_ptr<rate_limiter>> limiters;
  limiters.push_back(std::make_unique<item_exponential_rate_limiter>(kDefaultBaseDelay, kDefaultMaxDelay));
  limiters.push_back(std::make_unique<bucket_rate_limiter>(kDefaultQps, kDefaultBurst, time_source));
  return std::make_unique<max_of_rate_limiter>(std::move(limiters));
}

}  // namespace datashare::runtime
