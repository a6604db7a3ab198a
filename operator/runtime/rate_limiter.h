#pragma once
// How long a key waits before it is retried, with client-go's rate limiters
// (k8s.io/client-go/util/workqueue/default_rate_limiters.go) and controller-runtime's default:
// the slower of a per-key exponential backoff and an overall token bucket.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "operator/runtime/clock.h"

namespace datashare::runtime {

// controller-runtime's defaults, which operators' dashboards and alerts already assume.
inline constexpr clock::duration kDefaultBaseDelay = std::chrono::milliseconds(5);
inline constexpr clock::duration kDefaultMaxDelay = std::chrono::seconds(1000);
inline constexpr double kDefaultQps = 10.0;
inline constexpr int kDefaultBurst = 100;

// Decides the delay before a key is retried.
// Implementations are thread-safe: a work queue calls them from every worker.
class rate_limiter {
 public:
  virtual ~rate_limiter() = default;

  // The delay before `key` is tried again. Each call counts as one more failure of `key`.
  virtual clock::duration when(const std::string& key) = 0;

  // Stops tracking `key`: it succeeded, or the caller gave up on it. Its backoff starts over.
  virtual void forget(const std::string& key) = 0;

  // How many times when(key) was called since the last forget(key).
  virtual int num_requeues(const std::string& key) const = 0;
};

// Per-key exponential backoff: base, 2·base, 4·base, ... capped at `max`.
// Memory grows with the keys that failed and were not forgotten; callers forget on success.
class item_exponential_rate_limiter final : public rate_limiter {
 public:
  // Throws std::invalid_argument unless 0 < base <= max.
  explicit item_exponential_rate_limiter(clock::duration base = kDefaultBaseDelay,
                                         clock::duration max = kDefaultMaxDelay);

  clock::duration when(const std::string& key) override;
  void forget(const std::string& key) override;
  int num_requeues(const std::string& key) const override;

 private:
  const clock::duration base_;
  const clock::duration max_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> failures_;
};

// One token bucket for all keys (golang.org/x/time/rate's reservation semantics): it starts full
// with `burst` tokens and refills at `qps`; every when() takes a token, and when the bucket is empty
// returns how long until that token will have been refilled. Keys are not tracked: forget() does
// nothing and num_requeues() is 0.
class bucket_rate_limiter final : public rate_limiter {
 public:
  // Throws std::invalid_argument unless qps > 0 and burst >= 1. `time_source` must outlive the limiter.
  bucket_rate_limiter(double qps = kDefaultQps, int burst = kDefaultBurst, const clock& time_source = default_clock());

  clock::duration when(const std::string& key) override;
  void forget(const std::string& key) override;
  int num_requeues(const std::string& key) const override;

 private:
  const clock& clock_;
  const double qps_;
  const double burst_;
  std::mutex mu_;
  double tokens_;  // negative: tokens already promised to callers that are waiting
  clock::time_point last_;
};

// The longest delay of several limiters; every one of them sees every call.
class max_of_rate_limiter final : public rate_limiter {
 public:
  // Throws std::invalid_argument when `limiters` is empty or holds a null.
  explicit max_of_rate_limiter(std::vector<std::unique_ptr<rate_limiter>> limiters);

  clock::duration when(const std::string& key) override;
  void forget(const std::string& key) override;
  int num_requeues(const std::string& key) const override;

 private:
  const std::vector<std::unique_ptr<rate_limiter>> limiters_;
};

// controller-runtime's default: max(per-key backoff 5 ms → 1000 s, bucket of 10 qps / burst 100).
std::unique_ptr<rate_limiter> default_controller_rate_limiter(const clock& time_source = default_clock());

}  // namespace datashare::runtime
