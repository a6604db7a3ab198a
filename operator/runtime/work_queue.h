#pragma once
// The controller runtime's work queue: client-go's rate-limiting, delaying work queue
// (k8s.io/client-go/util/workqueue) for string keys ("namespace/name").
//
//   add ──► waiting ──get()──► processing ──done()──► gone
//             ▲   (once per key)     │ add() meanwhile: marked dirty,
//             └──────────────────────┘ queued again at done()
//
// - De-duplication: a key waiting in the queue is there once, however often it is added.
// - Exclusion: a key handed to a worker by get() is not handed to another until done(); adds in
//   between are kept and the key is queued again at done(). Together these make "never reconcile
//   the same object twice at once" hold for any number of workers.
// - Delays: add_after() holds a key until its deadline (the earliest one asked for wins);
//   add_rate_limited() takes the delay from the rate limiter (default: controller-runtime's).
// - Shutdown: shut_down() stops intake; get() then returns nullopt at once, even if keys are
//   still queued (they are dropped: whoever runs next re-lists). shut_down_with_drain() also waits
//   for keys being processed to be done.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "operator/runtime/clock.h"
#include "operator/runtime/queue_metrics.h"
#include "operator/runtime/rate_limiter.h"

namespace datashare::runtime {

struct work_queue_options {
  // Time for delays, rate limits and metrics. Not owned; must outlive the queue. Null: the real clock.
  const clock* time_source = nullptr;
  // Null: default_controller_rate_limiter(*time_source).
  std::unique_ptr<rate_limiter> limiter;
  // Null: no metrics.
  std::unique_ptr<queue_metrics> metrics;
  // How often the unfinished-work metrics are published while the queue runs (client-go: 500 ms).
  // Zero: only when update_unfinished_work() is called.
  clock::duration unfinished_work_period = std::chrono::milliseconds(500);
};

// Thread-safe: every member may be called from any thread. get() and shut_down_with_drain() block;
// the rest only take the queue's lock briefly (add_rate_limited() also asks the rate limiter).
// The queue owns its rate limiter, its metrics sink and one timer thread, which moves delayed keys
// into the queue when they are due and publishes the unfinished-work metrics. The destructor shuts
// the queue down and joins that thread; no other thread may still be inside a member by then.
class work_queue {
 public:
  explicit work_queue(work_queue_options options = {});
  ~work_queue();

  work_queue(const work_queue&) = delete;
  work_queue& operator=(const work_queue&) = delete;

  // Queues `key` unless it is waiting already. Ignored after shutdown.
  void add(const std::string& key);

  // Queues `key` once `delay` has passed (at once when delay <= 0). When `key` is already waiting
  // for a delay, the earlier deadline is kept.
  void add_after(const std::string& key, clock::duration delay);

  // add_after(key, limiter.when(key)): the retry of a failed key.
  void add_rate_limited(const std::string& key);

  // The rate limiter stops tracking `key` (call it when `key` succeeded, or was given up on).
  void forget(const std::string& key);

  // How many rate-limited retries of `key` since it was last forgotten.
  int num_requeues(const std::string& key) const;

  // Blocks until a key is ready and hands it to the caller, who must call done(key) when finished.
  // Returns nullopt once the queue is shutting down.
  std::optional<std::string> get();

  // The caller has finished processing `key`; if it was added meanwhile it is queued again.
  // A key that was not handed out by get() is ignored.
  void done(const std::string& key);

  // Keys ready to be handed out, including delayed keys whose deadline has passed; not keys being
  // processed, nor keys still waiting for their delay. Not const: due delayed keys are moved in
  // first, so that the answer does not depend on when the timer thread last woke.
  std::size_t len();

  // Stops intake: adds are ignored, queued and delayed keys dropped, blocked get()s return nullopt.
  // Workers still finish (and done()) the keys they hold. Idempotent.
  void shut_down();

  // shut_down(), then waits until every key handed out has been done(), or until `timeout` has
  // passed on the queue's clock. Returns whether the queue drained.
  bool shut_down_with_drain(clock::duration timeout);

  bool shutting_down() const;

  // Publishes the unfinished-work metrics now (the timer thread also does so periodically).
  void update_unfinished_work();

 private:
  void add_locked(const std::string& key, clock::time_point added_at);
  void promote_due_locked(clock::time_point now);
  void shut_down_locked();
  void update_unfinished_work_locked(clock::time_point now);
  void run_timer();

  const clock& clock_;
  const clock::duration unfinished_work_period_;
  std::unique_ptr<rate_limiter> limiter_;
  std::unique_ptr<queue_metrics> metrics_;

  mutable std::mutex mu_;
  std::condition_variable key_ready_;        // get(): ready_ gained a key, or shutdown
  std::condition_variable timer_wakeup_;     // timer thread: an earlier deadline, or shutdown
  std::condition_variable processing_idle_;  // shut_down_with_drain(): processing_ became empty
  bool shutting_down_ = false;
  // Keys ready for get(), in order. Each is also in dirty_.
  std::deque<std::string> ready_;
  // Keys added and not yet handed out, with when they were added (for queue latency). A key both
  // here and in processing_ is queued again by done().
  std::unordered_map<std::string, clock::time_point> dirty_;
  // Keys handed out by get() and not yet done(), with when they were handed out.
  std::unordered_map<std::string, clock::time_point> processing_;
  // Delayed keys: by deadline for the timer, by key for de-duplication.
  std::set<std::pair<clock::time_point, std::string>> delayed_;
  std::unordered_map<std::string, clock::time_point> delayed_deadline_;

  std::thread timer_;  // last: started once everything it touches exists
};

}  // namespace datashare::runtime
