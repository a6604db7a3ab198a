#include "common/thread_pool.h"

#include <latch>

namespace datashare {

thread_pool::thread_pool(std::size_t threads) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

thread_pool::~thread_pool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void thread_pool::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void thread_pool::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void run_all(thread_pool& pool, std::size_t n, const std::function<void(std::size_t)>& fn) {
  if (n == 0) return;
  std::latch done(static_cast<std::ptrdiff_t>(n - 1));
  for (std::size_t i = 1; i < n; ++i) {
    pool.post([&fn, &done, i] {
      fn(i);
      done.count_down();
    });
  }
  fn(0);
  done.wait();
}

}  // namespace datashare
