#pragma once
// The datashare operator: informers on DataProducts, DataSharingPolicies, the workloads they
// name and the ConfigMaps it writes; three controllers on the runtime (operator/runtime):
//
//   dataproduct        topic (create, drift, partitions, conflict, deletion policy), publisher
//                      sidecar of the owner workload, gateway objects, status with consumers
//   datasharingpolicy  product resolution, access, fields, consumer sidecar, lag in status
//   lag                one key, every --lag-poll-interval: group offsets vs high watermarks
//
// A workload's sidecar serves every product it owns and every policy it consumes, so both
// reconcilers converge a workload through one function (sync_workload) under a per-workload
// lock: its result depends only on the caches, never on which reconcile called it.

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "controllers/api/spec.h"
#include "controllers/desired/desired.h"
#include "controllers/kafka/topic_admin.h"
#include "controllers/lag/lag.h"
#include "operator/kube/client.h"
#include "operator/runtime/controller.h"
#include "operator/runtime/events.h"
#include "operator/runtime/informer.h"
#include "operator/runtime/manager.h"

namespace datashare::controllers {

namespace kinds {
extern const kube::resource_kind data_products;
extern const kube::resource_kind data_sharing_policies;
extern const kube::resource_kind stateful_sets;
extern const kube::resource_kind persistent_volume_claims;
}  // namespace kinds

inline constexpr const char* kFinalizer = "datashare.io/finalizer";

struct operator_options {
  sidecar_settings sidecar;
  std::string watch_namespace;  // "" = all
  // Label selector of the DataProducts and DataSharingPolicies this operator serves ("" = all):
  // several operators can share a cluster, each with its own set (a product and its policies
  // must then be selected by the same one).
  std::string resource_selector;
  std::chrono::milliseconds topic_resync{60000};  // drift is found by looking: Kafka has no watch
  std::chrono::milliseconds lag_interval{10000};
  int workers = 4;
};

// Whether a policy can be served, and why not (the condition's reason and message).
struct resolution {
  std::optional<data_sharing_policy> policy;
  std::optional<data_product> product;
  std::string reason;  // empty when resolved
  std::string message;
  std::string condition = "ProductResolved";  // the condition the failure belongs to

  bool ok() const { return reason.empty(); }
};

// What the controllers read of a cached DataProduct / DataSharingPolicy, parsed once per
// resourceVersion: a reconcile looks at many related objects (every policy of a product, every
// product of a workload), and unpacking and re-parsing them at each look was most of the
// operator's CPU at cold start.
struct product_view {
  parsed<data_product> spec;
  int32_t topic_partitions = 0;  // status.topic.partitions (0: not created yet)
};
struct policy_view {
  parsed<data_sharing_policy> spec;
  object_meta meta;
  std::string mode;
  bool ready = false;  // the Ready condition, which the product lists among its consumers
};

template <typename View>
class view_cache {
 public:
  using make_func = View (*)(const json&);
  explicit view_cache(make_func make) : make_(make) {}
  // Null when the key is not in the store (and forgets it).
  std::shared_ptr<const View> get(const runtime::store& store, const std::string& key) const {
    std::string rv = store.resource_version(key);
    std::unique_lock lock(mu_);
    if (rv.empty()) {
      views_.erase(key);
      return nullptr;
    }
    if (auto it = views_.find(key); it != views_.end() && it->second.first == rv) return it->second.second;
    lock.unlock();
    auto object = store.get(key);
    if (!object) return nullptr;
    auto view = std::make_shared<const View>(make_(*object));
    lock.lock();
    auto md = object->find("metadata");
    views_[key] = {md != object->end() && md->is_object() ? md->value("resourceVersion", "") : "", view};
    return view;
  }

 private:
  make_func make_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::pair<std::string, std::shared_ptr<const View>>> views_;
};

struct workload_result {
  bool exists = false;
  bool injected = false;  // a sidecar with the current config is in the pod template
  std::string config_map;
  std::string hash;
};

class datashare_operator {
 public:
  datashare_operator(kube::client& client, topic_admin& kafka, runtime::event_recorder& events,
                     prometheus::Registry& registry, operator_options options);
  ~datashare_operator();

  // Adds the informers and controllers to the manager (before manager::run()).
  void register_with(runtime::manager& mgr);

  runtime::reconcile_result reconcile_product(const runtime::request& req);
  runtime::reconcile_result reconcile_policy(const runtime::request& req);
  runtime::reconcile_result measure_lag();

 private:
  std::shared_ptr<const product_view> product_at(const std::string& key) const;
  std::shared_ptr<const policy_view> policy_at(const std::string& key) const;
  resolution resolve(const policy_view& policy) const;
  std::optional<data_product> valid_product(const std::string& key) const;
  bool owns_topic(const data_product& p) const;
  std::vector<resolved_policy> resolved_policies_of(const data_product& p) const;
  workload_result sync_workload(const workload_id& w);
  void sync_gateway(const data_product& p, const json& object, bool needed, const std::vector<resolved_policy>& copies);
  bool write_status(const kube::resource_kind& kind, const json& object, const json& status);
  // Adds ours with the object's resourceVersion as precondition (a stale cache → Conflict → retried).
  void ensure_finalizer(const kube::resource_kind& kind, const json& object);
  void remove_finalizer(const kube::resource_kind& kind, const json& object);
  void set_edge(const data_sharing_policy& p, const data_product* product);
  void forget_policy_metrics(const std::string& key);

  kube::client& client_;
  topic_admin& kafka_;
  runtime::event_recorder& events_;
  operator_options options_;

  runtime::informer* products_ = nullptr;
  runtime::informer* policies_ = nullptr;
  runtime::informer* deployments_ = nullptr;
  runtime::informer* statefulsets_ = nullptr;
  runtime::informer* config_maps_ = nullptr;
  runtime::controller* policy_controller_ = nullptr;
  view_cache<product_view> product_views_;
  view_cache<policy_view> policy_views_;

  std::mutex locks_mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> workload_locks_;

  struct lag_state {
    lag_estimate estimate;
    wall_time observed_at;
  };
  mutable std::mutex lag_mu_;
  std::map<std::string, lag_state> lag_;                                 // policy key → latest
  std::map<std::string, std::map<int32_t, watermark_history>> history_;  // topic → partitions
  std::map<std::string, prometheus::Labels> edges_;                      // policy key → labels
  // The lag worker's sweep in progress (one worker: no lock).
  std::vector<std::string> lag_sweep_;
  std::map<std::string, std::map<int32_t, int64_t>> sweep_watermarks_;

  prometheus::Family<prometheus::Gauge>& lag_events_;
  prometheus::Family<prometheus::Gauge>& lag_seconds_;
  prometheus::Family<prometheus::Gauge>& max_lag_;
  prometheus::Family<prometheus::Gauge>& edge_;
};

}  // namespace datashare::controllers
