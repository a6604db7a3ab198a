#pragma once
// A fixed set of threads running queued tasks in order of submission, for work that blocks
// (HTTP calls with deadlines, fsync'd writes) and must stay off the I/O threads.
//
// Threading: post() from any thread; tasks run on the pool's threads. The destructor finishes
// every queued task, then joins. A task must not wait for another task of the same pool (the
// pool would deadlock once every thread waits).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace datashare {

class thread_pool {
 public:
  explicit thread_pool(std::size_t threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  void post(std::function<void()> task);
  std::size_t size() const { return threads_.size(); }

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Runs fn(0) .. fn(n-1), fn(0) on the calling thread and the others on `pool`, and returns when
// all are done: the calls to several participants at once.
void run_all(thread_pool& pool, std::size_t n, const std::function<void(std::size_t)>& fn);

}  // namespace datashare
