#include "operator/runtime/prometheus_queue_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>

namespace datashare::runtime {
namespace {

// controller-runtime's buckets for both durations: prometheus.ExponentialBuckets(10e-9, 10, 12),
// 10 ns to 1000 s.
prometheus::Histogram::BucketBoundaries duration_buckets() {
  prometheus::Histogram::BucketBoundaries buckets;
  double bound = 10e-9;
  for (int i = 0; i < 12; ++i, bound *= 10) buckets.push_back(bound);
  return buckets;
}

prometheus::Labels queue_labels(const std::string& name) {
  return {{"name", name}, {"controller", name}};
}

prometheus::Gauge& gauge(prometheus::Registry& registry, const std::string& metric, const std::string& help,
                         const std::string& name) {
  return prometheus::BuildGauge().Name(metric).Help(help).Register(registry).Add(queue_labels(name));
}

prometheus::Counter& counter(prometheus::Registry& registry, const std::string& metric, const std::string& help,
                             const std::string& name) {
  return prometheus::BuildCounter().Name(metric).Help(help).Register(registry).Add(queue_labels(name));
}

prometheus::Histogram& histogram(prometheus::Registry& registry, const std::string& metric, const std::string& help,
                                 const std::string& name) {
  return prometheus::BuildHistogram().Name(metric).Help(help).Register(registry).Add(queue_labels(name),
                                                                                     duration_buckets());
}

double seconds(clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

// Help texts are controller-runtime's, so `# HELP` lines match what users know.
prometheus_queue_metrics::prometheus_queue_metrics(prometheus::Registry& registry, const std::string& name)
    : depth_(gauge(registry, "workqueue_depth", "Current depth of workqueue", name)),
      adds_(counter(registry, "workqueue_adds_total", "Total number of adds handled by workqueue", name)),
      queue_duration_(histogram(registry, "workqueue_queue_duration_seconds",
                                "How long in seconds an item stays in workqueue before being requested", name)),
      work_duration_(histogram(registry, "workqueue_work_duration_seconds",
                               "How long in seconds processing an item from workqueue takes.", name)),
      retries_(counter(registry, "workqueue_retries_total", "Total number of retries handled by workqueue", name)),
      unfinished_work_(gauge(registry, "workqueue_unfinished_work_seconds",
                             "How many seconds of work has been done that is in progress and hasn't been observed "
                             "by work_duration. Large values indicate stuck threads. One can deduce the number of "
                             "stuck threads by observing the rate at which this increases.",
                             name)),
      longest_running_processor_(gauge(registry, "workqueue_longest_running_processor_seconds",
                                       "How many seconds has the longest running processor for workqueue been "
                                       "running.",
                                       name)) {}

void prometheus_queue_metrics::on_add() {
  adds_.Increment();
  depth_.Increment();
}

void prometheus_queue_metrics::on_get(clock::duration queued) {
  depth_.Decrement();
  queue_duration_.Observe(seconds(queued));
}

void prometheus_queue_metrics::on_done(clock::duration worked) {
  work_duration_.Observe(seconds(worked));
}

void prometheus_queue_metrics::on_retry() {
  retries_.Increment();
}

void prometheus_queue_metrics::on_unfinished_work(clock::duration total, clock::duration longest) {
  unfinished_work_.Set(seconds(total));
  longest_running_processor_.Set(seconds(longest));
}

}  // namespace datashare::runtime
