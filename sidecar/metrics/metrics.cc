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
      lag_events_(prometheus::BuildGauge()
                      .Name("datashare_replica_lag_events")
                      .Help("Events in the topic not yet applied (high watermarks minus positions)")
                      .Register(*registry_)),
      lag_seconds_(
          prometheus::BuildGauge()
              .Name("datashare_replica_lag_seconds")
              .Help("How old the local copy may be: 0 when caught up, else the age of the newest applied event")
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
                   .Help("Publish requests by result: accepted, invalid, outbox_full, store_error")
                   .Register(*registry_)),
      delivered_(prometheus::BuildCounter()
                     .Name("datashare_publisher_delivered_total")
                     .Help("Changes acknowledged by Kafka and removed from the outbox")
                     .Register(*registry_)),
      redelivered_(prometheus::BuildCounter()
                       .Name("datashare_publisher_redelivered_total")
                       .Help("Changes produced again after a failed delivery (duplicates are harmless by version)")
                       .Register(*registry_)) {}

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
  p.lag_events = &lag_events_.Add(l);
  p.lag_seconds = &lag_seconds_.Add(l);
  p.propagation = &propagation_.Add(l, propagation_buckets());
  return p;
}

publisher_probe registry::publisher(const std::string& product) {
  publisher_probe p;
  p.outbox_depth = &outbox_depth_.Add({{"product", product}});
  p.accepted = &publish_.Add({{"product", product}, {"result", "accepted"}});
  p.invalid = &publish_.Add({{"product", product}, {"result", "invalid"}});
  p.outbox_full = &publish_.Add({{"product", product}, {"result", "outbox_full"}});
  p.store_error = &publish_.Add({{"product", product}, {"result", "store_error"}});
  p.delivered = &delivered_.Add({{"product", product}});
  p.redelivered = &redelivered_.Add({{"product", product}});
  return p;
}

std::string registry::serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace datashare::sidecar::metrics
