#include "operator/runtime/prometheus_queue_metrics.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

#include "operator/runtime/work_queue.h"

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;

const prometheus::MetricFamily* find_family(const std::vector<prometheus::MetricFamily>& families,
                                            const std::string& name) {
  auto it = std::find_if(families.begin(), families.end(), [&](const auto& f) { return f.name == name; });
  return it == families.end() ? nullptr : &*it;
}

// The series of `family` labelled for queue `queue`, or null.
const prometheus::ClientMetric* find_series(const std::vector<prometheus::MetricFamily>& families,
                                            const std::string& family, const std::string& queue) {
  const prometheus::MetricFamily* f = find_family(families, family);
  if (f == nullptr) return nullptr;
  for (const auto& series : f->metric) {
    std::map<std::string, std::string> labels;
    for (const auto& label : series.label) labels[label.name] = label.value;
    if (labels == std::map<std::string, std::string>{{"name", queue}, {"controller", queue}}) return &series;
  }
  return nullptr;
}

work_queue_options options_for(prometheus::Registry& registry, const std::string& name, const manual_clock& clock) {
  work_queue_options options;
  options.time_source = &clock;
  options.metrics = std::make_unique<prometheus_queue_metrics>(registry, name);
  options.unfinished_work_period = 0ms;  // published by hand below, so values are exact
  return options;
}

TEST(PrometheusQueueMetrics, ExportsControllerRuntimesNamesAndTypes) {
  prometheus::Registry registry;
  prometheus_queue_metrics metrics(registry, "widgets");
  const auto families = registry.Collect();
  const std::map<std::string, prometheus::MetricType> expected = {
      {"workqueue_depth", prometheus::MetricType::Gauge},
      {"workqueue_adds_total", prometheus::MetricType::Counter},
      {"workqueue_queue_duration_seconds", prometheus::MetricType::Histogram},
      {"workqueue_work_duration_seconds", prometheus::MetricType::Histogram},
      {"workqueue_retries_total", prometheus::MetricType::Counter},
      {"workqueue_unfinished_work_seconds", prometheus::MetricType::Gauge},
      {"workqueue_longest_running_processor_seconds", prometheus::MetricType::Gauge},
  };
  EXPECT_EQ(families.size(), expected.size());
  for (const auto& [name, type] : expected) {
    const prometheus::MetricFamily* family = find_family(families, name);
    ASSERT_NE(family, nullptr) << name;
    EXPECT_EQ(family->type, type) << name;
    EXPECT_NE(find_series(families, name, "widgets"), nullptr) << name;
  }
  // controller-runtime's buckets: 10 ns, 100 ns, ... 1000 s (and +Inf).
  const auto& buckets = find_series(families, "workqueue_queue_duration_seconds", "widgets")->histogram.bucket;
  ASSERT_EQ(buckets.size(), 13U);
  EXPECT_DOUBLE_EQ(buckets.front().upper_bound, 1e-8);
  EXPECT_DOUBLE_EQ(buckets[11].upper_bound, 1e3);
}

TEST(PrometheusQueueMetrics, ReflectsWhatTheQueueDid) {
  prometheus::Registry registry;
  manual_clock clock;
  work_queue queue(options_for(registry, "widgets", clock));

  queue.add("ns/a");
  queue.add("ns/a");
  queue.add("ns/b");
  clock.advance(2ms);
  ASSERT_EQ(queue.get(), "ns/a");
  clock.advance(3s);
  queue.done("ns/a");
  ASSERT_EQ(queue.get(), "ns/b");
  clock.advance(4s);
  queue.update_unfinished_work();
  queue.add_rate_limited("ns/a");
  queue.add_after("ns/c", 1s);

  const auto families = registry.Collect();
  auto value = [&](const std::string& family) -> const prometheus::ClientMetric& {
    const prometheus::ClientMetric* series = find_series(families, family, "widgets");
    EXPECT_NE(series, nullptr) << family;
    static const prometheus::ClientMetric none;
    return series != nullptr ? *series : none;
  };
  EXPECT_EQ(value("workqueue_adds_total").counter.value, 2);
  EXPECT_EQ(value("workqueue_depth").gauge.value, 0);
  EXPECT_EQ(value("workqueue_retries_total").counter.value, 2);
  const auto& queued = value("workqueue_queue_duration_seconds").histogram;
  EXPECT_EQ(queued.sample_count, 2U);
  EXPECT_DOUBLE_EQ(queued.sample_sum, 0.002 + 3.002);
  const auto& worked = value("workqueue_work_duration_seconds").histogram;
  EXPECT_EQ(worked.sample_count, 1U);
  EXPECT_DOUBLE_EQ(worked.sample_sum, 3.0);
  // 3 s falls in the (1, 10] bucket: cumulative counts are 0 up to 1 s and 1 from 10 s on.
  EXPECT_EQ(worked.bucket[8].cumulative_count, 0U);  // le=1
  EXPECT_EQ(worked.bucket[9].cumulative_count, 1U);  // le=10
  EXPECT_DOUBLE_EQ(value("workqueue_unfinished_work_seconds").gauge.value, 4.0);
  EXPECT_DOUBLE_EQ(value("workqueue_longest_running_processor_seconds").gauge.value, 4.0);
}

TEST(PrometheusQueueMetrics, QueuesShareFamiliesWithTheirOwnSeries) {
  prometheus::Registry registry;
  manual_clock clock;
  work_queue widgets(options_for(registry, "widgets", clock));
  work_queue gadgets(options_for(registry, "gadgets", clock));
  widgets.add("ns/a");
  gadgets.add("ns/a");
  gadgets.add("ns/b");

  const auto families = registry.Collect();
  EXPECT_EQ(families.size(), 7U);
  EXPECT_EQ(find_family(families, "workqueue_adds_total")->metric.size(), 2U);
  EXPECT_EQ(find_series(families, "workqueue_adds_total", "widgets")->counter.value, 1);
  EXPECT_EQ(find_series(families, "workqueue_adds_total", "gadgets")->counter.value, 2);
}

// The exposition passes Prometheus's own linter (promtool is installed by hack/install-deps.sh).
TEST(PrometheusQueueMetrics, ExpositionPassesPromtool) {
  prometheus::Registry registry;
  manual_clock clock;
  work_queue queue(options_for(registry, "widgets", clock));
  queue.add("ns/a");
  queue.get();

  char path[] = "/tmp/datashare_queue_metrics_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    prometheus::TextSerializer().Serialize(out, registry.Collect());
  }
  const std::string command = std::string("promtool check metrics < ") + path + " 2>&1";
  std::FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  const int status = pclose(pipe);
  std::remove(path);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool check metrics:\n" << output;
}

}  // namespace
}  // namespace datashare::runtime
