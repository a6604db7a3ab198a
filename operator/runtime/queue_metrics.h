#pragma once
// What a work queue reports about itself, as client-go's workqueue.MetricsProvider: one sink per
// queue. prometheus_queue_metrics.h exports it under controller-runtime's names; tests record it.

#include "operator/runtime/clock.h"

namespace datashare::runtime {

// Receives one queue's events. The queue owns its sink and calls it with the queue's lock held, from
// whichever thread made the change, so implementations must be thread-safe, fast, and must not
// call back into the queue.
class queue_metrics {
 public:
  virtual ~queue_metrics() = default;

  // A key entered the queue (depth +1). Not called for an add merged into a key already waiting.
  virtual void on_add() = 0;

  // A worker took a key that had waited `queued` since it was added (depth -1).
  virtual void on_get(clock::duration queued) = 0;

  // A worker finished a key it had held for `worked`.
  virtual void on_done(clock::duration worked) = 0;

  // A delayed add was asked for (add_after, add_rate_limited): client-go counts these as retries.
  virtual void on_retry() = 0;

  // Periodically: the summed and the longest time the keys being processed have been held so far;
  // large values with no matching on_done point at stuck workers.
  virtual void on_unfinished_work(clock::duration total, clock::duration longest) = 0;
};

}  // namespace datashare::runtime
