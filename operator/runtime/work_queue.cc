#include "operator/runtime/work_queue.h"

#include <algorithm>

namespace datashare::runtime {
namespace {

class no_queue_metrics final : public queue_metrics {
 public:
  void on_add() override {}
  void on_get(clock::duration /*queued*/) override {}
  void on_done(clock::duration /*worked*/) override {}
  void on_retry() override {}
  void on_unfinished_work(clock::duration /*total*/, clock::duration /*longest*/) override {}
};

}  // namespace

work_queue::work_queue(work_queue_options options)
    : clock_(options.time_source != nullptr ? *options.time_source : default_clock()),
      // Without a sink there is nothing to publish, so the timer need not wake for it.
      unfinished_work_period_(options.metrics ? options.unfinished_work_period : clock::duration::zero()),
      limiter_(options.limiter ? std::move(options.limiter) : default_controller_rate_limiter(clock_)),
      metrics_(options.metrics ? std::move(options.metrics)
                               : std::unique_ptr<queue_metrics>(std::make_unique<no_queue_metrics>())),
      timer_([this] { run_timer(); }) {}

work_queue::~work_queue() {
  shut_down();
  timer_.join();
}

void work_queue::add(const std::string& key) {
  std::lock_guard guard(mu_);
  if (shutting_down_) return;
  add_locked(key, clock_.now());
}

void work_queue::add_after(const std::string& key, clock::duration delay) {
  std::lock_guard guard(mu_);
  if (shutting_down_) return;
  metrics_->on_retry();
  const clock::time_point now = clock_.now();
  if (delay <= clock::duration::zero()) {
    add_locked(key, now);
    return;
  }
  const clock::time_point deadline = now + delay;
  auto [it, inserted] = delayed_deadline_.try_emplace(key, deadline);
  if (!inserted) {
    if (it->second <= deadline) return;
    delayed_.erase({it->second, key});
    it->second = deadline;
  }
  delayed_.emplace(deadline, key);
  if (delayed_.begin()->first == deadline) timer_wakeup_.notify_one();
}

void work_queue::add_rate_limited(const std::string& key) {
  // Outside the queue's lock: the limiter has its own, and workers should not wait on both.
  add_after(key, limiter_->when(key));
}

void work_queue::forget(const std::string& key) {
  limiter_->forget(key);
}

int work_queue::num_requeues(const std::string& key) const {
  return limiter_->num_requeues(key);
}

std::optional<std::string> work_queue::get() {
  std::unique_lock lock(mu_);
  clock::time_point now;
  for (;;) {
    if (shutting_down_) return std::nullopt;
    now = clock_.now();
    promote_due_locked(now);
    if (!ready_.empty()) break;
    key_ready_.wait(lock);
  }
  std::string key = std::move(ready_.front());
  ready_.pop_front();
  auto dirty = dirty_.find(key);
  const clock::time_point added_at = dirty->second;
  dirty_.erase(dirty);
  processing_.emplace(key, now);
  metrics_->on_get(now - added_at);
  return key;
}

void work_queue::done(const std::string& key) {
  std::lock_guard guard(mu_);
  auto it = processing_.find(key);
  if (it == processing_.end()) return;
  metrics_->on_done(clock_.now() - it->second);
  processing_.erase(it);
  if (!shutting_down_ && dirty_.contains(key)) {
    ready_.push_back(key);
    key_ready_.notify_one();
  }
  if (processing_.empty()) processing_idle_.notify_all();
}

std::size_t work_queue::len() {
  std::lock_guard guard(mu_);
  promote_due_locked(clock_.now());
  return ready_.size();
}

void work_queue::shut_down() {
  std::lock_guard guard(mu_);
  shut_down_locked();
}

bool work_queue::shut_down_with_drain(clock::duration timeout) {
  std::unique_lock lock(mu_);
  shut_down_locked();
  const clock::time_point deadline = clock_.now() + timeout;
  while (!processing_.empty()) {
    if (clock_.now() >= deadline) return false;
    clock_.wait_until(processing_idle_, lock, deadline);
  }
  return true;
}

bool work_queue::shutting_down() const {
  std::lock_guard guard(mu_);
  return shutting_down_;
}

void work_queue::update_unfinished_work() {
  std::lock_guard guard(mu_);
  update_unfinished_work_locked(clock_.now());
}

void work_queue::add_locked(const std::string& key, clock::time_point added_at) {
  if (!dirty_.try_emplace(key, added_at).second) return;  // already waiting, or re-queued at done()
  metrics_->on_add();
  if (processing_.contains(key)) return;  // done() queues it
  ready_.push_back(key);
  key_ready_.notify_one();
}

void work_queue::promote_due_locked(clock::time_point now) {
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    auto node = delayed_.extract(delayed_.begin());
    delayed_deadline_.erase(node.value().second);
    // Latency counts from the deadline: from then on the key was ready, even if the timer woke late.
    add_locked(node.value().second, node.value().first);
  }
}

void work_queue::shut_down_locked() {
  if (shutting_down_) return;
  shutting_down_ = true;
  ready_.clear();
  dirty_.clear();
  delayed_.clear();
  delayed_deadline_.clear();
  key_ready_.notify_all();
  timer_wakeup_.notify_all();
  processing_idle_.notify_all();
}

void work_queue::update_unfinished_work_locked(clock::time_point now) {
  clock::duration total = clock::duration::zero();
  clock::duration longest = clock::duration::zero();
  for (const auto& [key, started] : processing_) {
    total += now - started;
    longest = std::max(longest, now - started);
  }
  metrics_->on_unfinished_work(total, longest);
}

void work_queue::run_timer() {
  std::unique_lock lock(mu_);
  const bool publishes = unfinished_work_period_ > clock::duration::zero();
  clock::time_point next_publish = clock_.now() + unfinished_work_period_;
  while (!shutting_down_) {
    const clock::time_point now = clock_.now();
    promote_due_locked(now);
    if (publishes && now >= next_publish) {
      update_unfinished_work_locked(now);
      next_publish = now + unfinished_work_period_;
    }
    std::optional<clock::time_point> wake_at;
    if (!delayed_.empty()) wake_at = delayed_.begin()->first;
    if (publishes) wake_at = std::min(wake_at.value_or(next_publish), next_publish);
    if (wake_at) {
      clock_.wait_until(timer_wakeup_, lock, *wake_at);
    } else {
      timer_wakeup_.wait(lock);
    }
  }
}

}  // namespace datashare::runtime
