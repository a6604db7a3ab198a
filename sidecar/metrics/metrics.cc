#include "sidecar/metrics/metrics.h"

#include <prometheus/text_serializer.h>

namespace datashare::sidecar::metrics {

registry::registry()
    : registry_(std::make_shared<prometheus::Registry>()),
      applied_(prometheus::BuildCounter()
                   .Name("datashare_replica_apply_total")
                   .Help("Change events applied to the local copy (updates and deletes)")
                   .Register(*registry_)),
      stale_(prometheus::BuildCounter()
                 .Name("datashare_replica_skipped_stale_total")
                 .Help("Change events skipped because the stored version was not older")
                 .Register(*registry_)),
      dlq_(prometheus::BuildCounter()
               .Name("datashare_replica_dlq_total")
               .Help("Poison change events sent to the dead-letter topic")
               .Register(*registry_)),
      consumer_restarts_(prometheus::BuildCounter()
                             .Name("datashare_replica_consumer_restarts_total")
                             .Help("Kafka consumers replaced because they handed out nothing while the copy was behind")
                             .Register(*registry_)),
      lag_events_(prometheus::BuildGauge()
                      .Name("datashare_replica_lag_events")
                      .Help("Events in the topic not yet applied (high watermarks minus positions)")
                      .Register(*registry_)),
      lag_seconds_(
          prometheus::BuildGauge()
              .Name("datashare_replica_lag_seconds")
              .Help("How old the local copy may be: 0 when caught up, else the age of the newest applied event")
              .Register(*registry_)),
      read_index_bytes_(prometheus::BuildGauge()
                            .Name("datashare_replica_read_index_bytes")
                            .Help("Memory held by the copy's read index (readIndex auto or memory); 0 without one "
                                  "or once readIndex auto dropped it past its budget")
                            .Register(*registry_)),
      propagation_(prometheus::BuildHistogram()
                       .Name("datashare_propagation_seconds")
                       .Help("Time from an event's ce_time to its application in the local copy")
                       .Register(*registry_)),
      outbox_depth_(prometheus::BuildGauge()
                        .Name("datashare_publisher_outbox_depth")
                        .Help("Changes accepted and not yet acknowledged by Kafka")
                        .Register(*registry_)),
      publish_(prometheus::BuildCounter()
                   .Name("datashare_publish_total")
                   .Help("Publish requests by result: accepted, invalid, outbox_full, store_error, held (a gateway "
                         "transaction holds the key), below_floor (a version under the key's last)")
                   .Register(*registry_)),
      delivered_(prometheus::BuildCounter()
                     .Name("datashare_publisher_delivered_total")
                     .Help("Changes acknowledged by Kafka and removed from the outbox")
                     .Register(*registry_)),
      redelivered_(prometheus::BuildCounter()
                       .Name("datashare_publisher_redelivered_total")
                       .Help("Changes produced again after a failed delivery (duplicates are harmless by version)")
                       .Register(*registry_)),
      sync_duration_(prometheus::BuildHistogram()
                         .Name("datashare_sync_request_duration_seconds")
                         .Help("Reads through the sync proxy, by outcome (owner, cache, stale, not_found, timeout, "
                               "owner_error, malformed, circuit_open, bulkhead_full)")
                         .Register(*registry_)),
      sync_circuit_(prometheus::BuildGauge()
                        .Name("datashare_sync_circuit_state")
                        .Help("Circuit breaker towards the owner: 0 closed, 1 half-open (one probe call out), 2 open")
                        .Register(*registry_)),
      sync_hits_(prometheus::BuildCounter()
                     .Name("datashare_sync_cache_hits_total")
                     .Help("Sync reads answered from a fresh cache entry")
                     .Register(*registry_)),
      sync_misses_(prometheus::BuildCounter()
                       .Name("datashare_sync_cache_misses_total")
                       .Help("Sync reads that needed the owner (absent, expired or too old for the staleness budget)")
                       .Register(*registry_)),
      sync_inflight_(prometheus::BuildGauge()
                         .Name("datashare_sync_inflight")
                         .Help("Calls to the owner in flight (bounded by the bulkhead, sync.maxInFlight)")
                         .Register(*registry_)),
      sync_fallback_(prometheus::BuildCounter()
                         .Name("datashare_sync_fallback_total")
                         .Help("Reads served from elsewhere than usual: max_lag and not_in_copy (hybrid local fields "
                               "read through the owner), stale_on_error (expired cache served)")
                         .Register(*registry_)) {}

const char* to_string(sync_outcome o) {
  static constexpr const char* kNames[kSyncOutcomes] = {
      "owner", "cache", "stale", "not_found", "timeout", "owner_error", "malformed", "circuit_open", "bulkhead_full"};
  return kNames[static_cast<int>(o)];
}

const char* to_string(fallback_reason r) {
  static constexpr const char* kNames[kFallbackReasons] = {"max_lag", "not_in_copy", "stale_on_error"};
  return kNames[static_cast<int>(r)];
}

namespace {

// Fine below 10 ms, where the propagation bar of the design lives (P3: raw Kafka + 3 ms), so a
// quantile read from the histogram is good to ±0.25 ms there; coarse above.
prometheus::Histogram::BucketBoundaries propagation_buckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (int i = 1; i <= 40; ++i) b.push_back(0.00025 * i);
  for (double v : {0.0125, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0}) b.push_back(v);
  return b;
}

}  // namespace

replica_probe registry::replica(const std::string& product, const std::string& policy) {
  prometheus::Labels l{{"product", product}, {"policy", policy}};
  replica_probe p;
  p.applied = &applied_.Add(l);
  p.skipped_stale = &stale_.Add(l);
  p.dlq = &dlq_.Add(l);
  p.consumer_restarts = &consumer_restarts_.Add(l);
  p.lag_events = &lag_events_.Add(l);
  p.lag_seconds = &lag_seconds_.Add(l);
  p.read_index_bytes = &read_index_bytes_.Add(l);
  p.propagation_bounds = propagation_buckets();
  p.propagation = &propagation_.Add(l, p.propagation_bounds);
  return p;
}

publisher_probe registry::publisher(const std::string& product) {
  publisher_probe p;
  p.outbox_depth = &outbox_depth_.Add({{"product", product}});
  p.accepted = &publish_.Add({{"product", product}, {"result", "accepted"}});
  p.invalid = &publish_.Add({{"product", product}, {"result", "invalid"}});
  p.outbox_full = &publish_.Add({{"product", product}, {"result", "outbox_full"}});
  p.store_error = &publish_.Add({{"product", product}, {"result", "store_error"}});
  p.held = &publish_.Add({{"product", product}, {"result", "held"}});
  p.below_floor = &publish_.Add({{"product", product}, {"result", "below_floor"}});
  p.delivered = &delivered_.Add({{"product", product}});
  p.redelivered = &redelivered_.Add({{"product", product}});
  return p;
}

namespace {

// Loopback reads are tens of microseconds, owner calls milliseconds, deadlines up to a minute.
prometheus::Histogram::BucketBoundaries sync_buckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,     0.25,   0.5,     1.0,    2.5,   5.0,    10.0,  30.0, 60.0};
}

}  // namespace

sync_probe registry::sync(const std::string& policy) {
  sync_probe p;
  for (int i = 0; i < kSyncOutcomes; ++i) {
    p.duration[i] =
        &sync_duration_.Add({{"policy", policy}, {"outcome", to_string(static_cast<sync_outcome>(i))}}, sync_buckets());
  }
  p.circuit_state = &sync_circuit_.Add({{"policy", policy}});
  p.cache_hits = &sync_hits_.Add({{"policy", policy}});
  p.cache_misses = &sync_misses_.Add({{"policy", policy}});
  p.inflight = &sync_inflight_.Add({{"policy", policy}});
  for (int i = 0; i < kFallbackReasons; ++i) {
    p.fallback[i] = &sync_fallback_.Add({{"policy", policy}, {"reason", to_string(static_cast<fallback_reason>(i))}});
  }
  return p;
}

std::string registry::serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace datashare::sidecar::metrics
