#pragma once
// Time as the controller runtime sees it. Everything in operator/runtime that measures or waits
// takes a `const clock&`, so that unit tests move time by hand (manual_clock) instead of sleeping,
// as client-go does with k8s.io/utils/clock.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <list>
#include <mutex>

namespace datashare::runtime {

// A monotonic time source and waits measured on it.
// Thread-safe. Not owned by its users: a clock is passed by reference and must outlive them.
class clock {
 public:
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;

  virtual ~clock() = default;

  virtual time_point now() const = 0;

  // Blocks on `cv` until it is notified or `deadline`, on this clock, has passed. `lock` holds the
  // mutex that guards what the caller waits for, on entry and on return; it may be released in
  // between and the return may be early, so callers re-check their condition in a loop, exactly as
  // with std::condition_variable::wait_until.
  virtual void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                          time_point deadline) const = 0;
};

// std::chrono::steady_clock. Stateless.
class real_clock final : public clock {
 public:
  time_point now() const override;
  void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, time_point deadline) const override;
};

// The process-wide real clock: the default wherever a clock is optional.
const clock& default_clock();

// A clock that moves only when advance() is called: for tests. A thread blocked in wait_until()
// is woken as soon as advance() reaches its deadline, with no real-time polling, so tests that
// drive delays, backoffs and timeouts are exact and take no wall-clock time.
// Thread-safe: any thread may advance while others wait, but not while holding a mutex that a
// waiter passed to wait_until() (advance() takes it to deliver the wake-up).
class manual_clock final : public clock {
 public:
  // Starts well after the epoch so that `now() - some_delay` never underflows in tests.
  explicit manual_clock(time_point start = time_point{} + std::chrono::hours(24));

  time_point now() const override;
  void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, time_point deadline) const override;

  void advance(duration step);

  // How many threads are blocked in wait_until(). A test that starts a timed wait on another thread
  // checks this before advancing, so the wait's deadline is computed from the time before the step.
  std::size_t waiters() const;

  // Blocks (in real time, at most `timeout`) until at least `count` threads are in wait_until().
  bool await_waiters(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

 private:
  struct waiter {
    std::condition_variable* cv;
    std::mutex* owner_mutex;
    time_point deadline;
    int notifying = 0;  // advance() calls that still hold a pointer to this entry
  };

  mutable std::mutex mu_;
  mutable std::condition_variable waiters_changed_;
  time_point now_;
  mutable std::list<waiter> waiters_;  // a list: entries stay put while advance() points at them
};

}  // namespace datashare::runtime
