#pragma once
// The sidecar's Prometheus metrics (prometheus-cpp), served as text on /metrics. One registry per
// process; each replica and publisher gets a probe holding references to its labelled series.
// Thread-safe: prometheus-cpp metrics are atomic; probes are cheap to copy and outlive nothing
// (the metrics object owns the series and must outlive every probe).

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace datashare::sidecar::metrics {

struct replica_probe {
  prometheus::Counter* applied = nullptr;
  prometheus::Counter* skipped_stale = nullptr;
  prometheus::Counter* dlq = nullptr;
  prometheus::Gauge* lag_events = nullptr;
  prometheus::Gauge* lag_seconds = nullptr;
  prometheus::Histogram* propagation = nullptr;
};

struct publisher_probe {
  prometheus::Gauge* outbox_depth = nullptr;
  prometheus::Counter* accepted = nullptr;     // datashare_publish_total{result="accepted"}
  prometheus::Counter* invalid = nullptr;      // result="invalid" (400)
  prometheus::Counter* outbox_full = nullptr;  // result="outbox_full" (503)
  prometheus::Counter* store_error = nullptr;  // result="store_error" (500)
  prometheus::Counter* delivered = nullptr;    // datashare_publisher_delivered_total
  prometheus::Counter* redelivered = nullptr;  // datashare_publisher_redelivered_total (rewinds)
};

class registry {
 public:
  registry();
  replica_probe replica(const std::string& product, const std::string& policy);
  publisher_probe publisher(const std::string& product);
  std::string serialize() const;  // Prometheus text format 0.0.4

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& applied_;
  prometheus::Family<prometheus::Counter>& stale_;
  prometheus::Family<prometheus::Counter>& dlq_;
  prometheus::Family<prometheus::Gauge>& lag_events_;
  prometheus::Family<prometheus::Gauge>& lag_seconds_;
  prometheus::Family<prometheus::Histogram>& propagation_;
  prometheus::Family<prometheus::Gauge>& outbox_depth_;
  prometheus::Family<prometheus::Counter>& publish_;
  prometheus::Family<prometheus::Counter>& delivered_;
  prometheus::Family<prometheus::Counter>& redelivered_;
};

}  // namespace datashare::sidecar::metrics
