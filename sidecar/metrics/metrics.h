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
#include <vector>

namespace datashare::sidecar::metrics {

struct replica_probe {
  prometheus::Counter* applied = nullptr;
  prometheus::Counter* skipped_stale = nullptr;
  prometheus::Counter* dlq = nullptr;
  prometheus::Counter* consumer_restarts = nullptr;
  prometheus::Gauge* lag_events = nullptr;
  prometheus::Gauge* lag_seconds = nullptr;
  prometheus::Gauge* read_index_bytes = nullptr;  // 0 without an index or once it is dropped
  prometheus::Histogram* propagation = nullptr;
  // propagation's bucket bounds (seconds, ascending): a batch's observations are sorted into
  // them by the caller and added with one ObserveMultiple (one lock, not one per event).
  std::vector<double> propagation_bounds;
};

struct publisher_probe {
  prometheus::Gauge* outbox_depth = nullptr;
  prometheus::Counter* accepted = nullptr;     // datashare_publish_total{result="accepted"}
  prometheus::Counter* invalid = nullptr;      // result="invalid" (400)
  prometheus::Counter* outbox_full = nullptr;  // result="outbox_full" (503)
  prometheus::Counter* store_error = nullptr;  // result="store_error" (500)
  prometheus::Counter* held = nullptr;         // result="held" (409: a gateway transaction holds the key)
  prometheus::Counter* below_floor = nullptr;  // result="below_floor" (409: a version under the key's last)
  prometheus::Counter* delivered = nullptr;    // datashare_publisher_delivered_total
  prometheus::Counter* redelivered = nullptr;  // datashare_publisher_redelivered_total (rewinds)
};

// How one sync read ended (label `outcome` of datashare_sync_request_duration_seconds).
enum class sync_outcome {
  owner,          // 200 read through the owner
  cache,          // 200 from a fresh cache entry
  stale,          // 200 from an expired cache entry, the owner failing (serveStaleOnError)
  not_found,      // the owner answered 404
  timeout,        // 504: the deadline passed
  owner_error,    // 502: connection failure, 5xx, unexpected status
  malformed,      // 502: the owner's body is not a JSON object of the product's types
  circuit_open,   // 503: the breaker refused the call
  bulkhead_full,  // 503: too many owner calls in flight
};
inline constexpr int kSyncOutcomes = 9;
const char* to_string(sync_outcome o);

// Why a read did not come from where it normally does (datashare_sync_fallback_total{reason}).
enum class fallback_reason {
  max_lag,         // hybrid: the local copy is behind maxLag, local fields read through the owner
  not_in_copy,     // hybrid: the key is not in the local copy (yet), every field read through the owner
  stale_on_error,  // the owner failed or the circuit is open: an expired cached value served
};
inline constexpr int kFallbackReasons = 3;
const char* to_string(fallback_reason r);

struct sync_probe {
  prometheus::Histogram* duration[kSyncOutcomes] = {};
  prometheus::Gauge* circuit_state = nullptr;  // 0 closed, 1 half-open, 2 open
  prometheus::Counter* cache_hits = nullptr;
  prometheus::Counter* cache_misses = nullptr;
  prometheus::Gauge* inflight = nullptr;  // owner calls in flight
  prometheus::Counter* fallback[kFallbackReasons] = {};

  void observe(sync_outcome o, double seconds) const { duration[static_cast<int>(o)]->Observe(seconds); }
  void fell_back(fallback_reason r) const { fallback[static_cast<int>(r)]->Increment(); }
};

class registry {
 public:
  registry();
  replica_probe replica(const std::string& product, const std::string& policy);
  publisher_probe publisher(const std::string& product);
  sync_probe sync(const std::string& policy);
  std::string serialize() const;  // Prometheus text format 0.0.4

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& applied_;
  prometheus::Family<prometheus::Counter>& stale_;
  prometheus::Family<prometheus::Counter>& dlq_;
  prometheus::Family<prometheus::Counter>& consumer_restarts_;
  prometheus::Family<prometheus::Gauge>& lag_events_;
  prometheus::Family<prometheus::Gauge>& lag_seconds_;
  prometheus::Family<prometheus::Gauge>& read_index_bytes_;
  prometheus::Family<prometheus::Histogram>& propagation_;
  prometheus::Family<prometheus::Gauge>& outbox_depth_;
  prometheus::Family<prometheus::Counter>& publish_;
  prometheus::Family<prometheus::Counter>& delivered_;
  prometheus::Family<prometheus::Counter>& redelivered_;
  prometheus::Family<prometheus::Histogram>& sync_duration_;
  prometheus::Family<prometheus::Gauge>& sync_circuit_;
  prometheus::Family<prometheus::Counter>& sync_hits_;
  prometheus::Family<prometheus::Counter>& sync_misses_;
  prometheus::Family<prometheus::Gauge>& sync_inflight_;
  prometheus::Family<prometheus::Counter>& sync_fallback_;
};

}  // namespace datashare::sidecar::metrics
