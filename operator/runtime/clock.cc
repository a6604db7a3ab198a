#include "operator/runtime/clock.h"

#include <vector>

namespace datashare::runtime {

clock::time_point real_clock::now() const {
  return std::chrono::steady_clock::now();
}

void real_clock::wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                            time_point deadline) const {
  cv.wait_until(lock, deadline);
}

const clock& default_clock() {
  static const real_clock instance;
  return instance;
}

manual_clock::manual_clock(time_point start) : now_(start) {}

clock::time_point manual_clock::now() const {
  std::lock_guard guard(mu_);
  return now_;
}

// Lock order: a waiter holds its owner's mutex when it registers (owner → mu_), so advance() never
// holds mu_ while it takes an owner's mutex, and a waiter leaving the list drops its owner's mutex
// before taking mu_.
void manual_clock::wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                              time_point deadline) const {
  std::list<waiter>::iterator self;
  {
    std::lock_guard guard(mu_);
    if (now_ >= deadline) return;
    self = waiters_.insert(waiters_.end(), waiter{&cv, lock.mutex(), deadline});
  }
  waiters_changed_.notify_all();

  // No wake-up is lost between registering and waiting: until cv.wait() releases the owner's mutex,
  // advance() blocks on that mutex before it notifies.
  cv.wait(lock);

  lock.unlock();
  {
    std::unique_lock guard(mu_);
    waiters_changed_.wait(guard, [&] { return self->notifying == 0; });
    waiters_.erase(self);
  }
  waiters_changed_.notify_all();
  lock.lock();
}

void manual_clock::advance(duration step) {
  std::vector<waiter*> due;
  {
    std::lock_guard guard(mu_);
    now_ += step;
    for (waiter& w : waiters_) {
      if (w.deadline <= now_) {
        ++w.notifying;  // keeps the entry (and so its cv) alive until we are done with it
        due.push_back(&w);
      }
    }
  }
  for (waiter* w : due) {
    std::lock_guard owner(*w->owner_mutex);
    w->cv->notify_all();
  }
  if (due.empty()) return;
  {
    std::lock_guard guard(mu_);
    for (waiter* w : due) --w->notifying;
  }
  waiters_changed_.notify_all();
}

std::size_t manual_clock::waiters() const {
  std::lock_guard guard(mu_);
  return waiters_.size();
}

bool manual_clock::await_waiters(std::size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock guard(mu_);
  return waiters_changed_.wait_for(guard, timeout, [&] { return waiters_.size() >= count; });
}

}  // namespace datashare::runtime
