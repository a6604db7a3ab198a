#pragma once
// A work queue's metrics in Prometheus under controller-runtime's names, so existing dashboards
// and alerts for Go operators work unchanged:
//   workqueue_depth, workqueue_adds_total, workqueue_queue_duration_seconds,
//   workqueue_work_duration_seconds, workqueue_retries_total, workqueue_unfinished_work_seconds,
//   workqueue_longest_running_processor_seconds
// each labelled {name="<queue>", controller="<queue>"} (controller-runtime sets both to the
// controller's name).

#include <string>

#include "operator/runtime/queue_metrics.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace datashare::runtime {

// One queue's series in `registry`. The families are created on first use and shared by every
// queue of the registry (the registry must merge families of the same name, its default).
// The registry owns the metric objects and must outlive this sink. Thread-safe (prometheus-cpp
// metrics are).
class prometheus_queue_metrics final : public queue_metrics {
 public:
  prometheus_queue_metrics(prometheus::Registry& registry, const std::string& name);

  void on_add() override;
  void on_get(clock::duration queued) override;
  void on_done(clock::duration worked) override;
  void on_retry() override;
  void on_unfinished_work(clock::duration total, clock::duration longest) override;

 private:
  prometheus::Gauge& depth_;
  prometheus::Counter& adds_;
  prometheus::Histogram& queue_duration_;
  prometheus::Histogram& work_duration_;
  prometheus::Counter& retries_;
  prometheus::Gauge& unfinished_work_;
  prometheus::Gauge& longest_running_processor_;
};

}  // namespace datashare::runtime
