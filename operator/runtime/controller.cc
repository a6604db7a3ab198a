#include "operator/runtime/controller.h"

#include <prometheus/gauge.h>

#include "common/log.h"
#include "operator/kube/error.h"
#include "operator/kube/json_access.h"
#include "operator/runtime/prometheus_queue_metrics.h"

namespace datashare::runtime {

request request::from_key(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return {"", key};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

namespace {

// controller-runtime's reconcile_time_seconds buckets.
prometheus::Histogram::BucketBoundaries reconcile_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5,
          1.75,  2.0,  2.5,   3.0,  3.5, 4.0,  4.5, 5,    6,   7,    8,   9,    10,  15,  20,  25,  30,  40,  50,   60};
}

std::vector<std::string> owner_keys(const kube::json& object, const std::string& owner_kind, bool controller_only) {
  std::vector<std::string> keys;
  const std::string ns = kube::namespace_of(object);
  auto m = object.find("metadata");
  if (m == object.end() || !m->is_object()) return keys;
  auto refs = m->find("ownerReferences");
  if (refs == m->end() || !refs->is_array()) return keys;
  for (const auto& ref : *refs) {
    if (!ref.is_object() || kube::string_member(ref, "kind") != owner_kind) continue;
    if (controller_only && !kube::bool_member(ref, "controller", false)) continue;
    const std::string name = kube::string_member(ref, "name");
    if (!name.empty()) keys.push_back(ns.empty() ? name : ns + "/" + name);
  }
  return keys;
}

}  // namespace

controller::controller(controller_options options, reconcile_func reconcile)
    : options_(std::move(options)), reconcile_(std::move(reconcile)) {
  work_queue_options q;
  q.time_source = options_.time_source;
  q.limiter = std::move(options_.limiter);
  if (options_.registry != nullptr) {
    q.metrics = std::make_unique<prometheus_queue_metrics>(*options_.registry, options_.name);
    reconcile_total_ = &prometheus::BuildCounter()
                            .Name("controller_runtime_reconcile_total")
                            .Help("Total number of reconciliations per controller")
                            .Register(*options_.registry);
    reconcile_errors_ = &prometheus::BuildCounter()
                             .Name("controller_runtime_reconcile_errors_total")
                             .Help("Total number of reconciliation errors per controller")
                             .Register(*options_.registry);
    reconcile_time_ = &prometheus::BuildHistogram()
                           .Name("controller_runtime_reconcile_time_seconds")
                           .Help("Length of time per reconciliation per controller")
                           .Register(*options_.registry);
    active_workers_ = &prometheus::BuildGauge()
                           .Name("controller_runtime_active_workers")
                           .Help("Number of currently used workers per controller")
                           .Register(*options_.registry);
    // Pre-create the series so dashboards show zeros rather than nothing.
    for (const char* result : {"success", "error", "requeue", "requeue_after"}) {
      reconcile_total_->Add({{"controller", options_.name}, {"result", result}});
    }
    reconcile_errors_->Add({{"controller", options_.name}});
    prometheus::BuildGauge()
        .Name("controller_runtime_max_concurrent_reconciles")
        .Help("Maximum number of concurrent reconciles per controller")
        .Register(*options_.registry)
        .Add({{"controller", options_.name}})
        .Set(options_.workers);
  }
  queue_ = std::make_unique<work_queue>(std::move(q));
}

controller::~controller() {
  stop(std::chrono::seconds(0));
}

namespace {

// Whether two objects differ in a member other than the `ignored` ones.
bool differs_outside(const kube::json& a, const kube::json& b, std::initializer_list<const char*> ignored) {
  auto skip = [&](const std::string& k) {
    for (const char* i : ignored)
      if (k == i) return true;
    return false;
  };
  std::size_t counted_a = 0;
  for (const auto& [k, v] : a.items()) {
    if (skip(k)) continue;
    ++counted_a;
    auto it = b.find(k);
    if (it == b.end() || *it != v) return true;
  }
  std::size_t counted_b = 0;
  for (const auto& [k, v] : b.items())
    if (!skip(k)) ++counted_b;
  return counted_a != counted_b;
}

}  // namespace

bool changed_outside_status(const kube::json& old, const kube::json& now) {
  if (!old.is_object() || !now.is_object()) return old != now;
  if (differs_outside(old, now, {"status", "metadata"})) return true;
  static const kube::json empty = kube::json::object();
  const auto& om = old.contains("metadata") ? old["metadata"] : empty;
  const auto& nm = now.contains("metadata") ? now["metadata"] : empty;
  if (!om.is_object() || !nm.is_object()) return om != nm;
  return differs_outside(om, nm, {"resourceVersion", "managedFields"});
}

bool spec_or_deletion_changed(const kube::json& old, const kube::json& now) {
  if (!old.is_object() || !now.is_object()) return old != now;
  auto deleting = [](const kube::json& o) {
    auto m = o.find("metadata");
    return m != o.end() && m->is_object() && m->contains("deletionTimestamp");
  };
  if (deleting(old) != deleting(now)) return true;
  auto os = old.find("spec");
  auto ns = now.find("spec");
  if (os != old.end() || ns != now.end()) return os == old.end() || ns == now.end() || *os != *ns;
  return differs_outside(old, now, {"status", "metadata"});
}

void controller::watch_for(informer& primary, update_filter filter) {
  primary.add_handler({.on_add = [this](const object_ptr& o) { enqueue(kube::object_key(*o)); },
                       .on_update =
                           [this, filter](const object_ptr& old, const object_ptr& o) {
                             if (!filter || filter(*old, *o)) enqueue(kube::object_key(*o));
                           },
                       .on_delete = [this](const object_ptr& o) { enqueue(kube::object_key(*o)); }});
}

void controller::watch_owned(informer& owned, const std::string& owner_kind, bool controller_only,
                             update_filter filter) {
  auto to_owners = [this, owner_kind, controller_only](const object_ptr& o) {
    for (const auto& k : owner_keys(*o, owner_kind, controller_only)) enqueue(k);
  };
  owned.add_handler({.on_add = to_owners,
                     .on_update =
                         [to_owners, filter](const object_ptr& old, const object_ptr& now) {
                           if (filter && !filter(*old, *now)) return;
                           // Both: an ownerReference may have been added or removed.
                           to_owners(old);
                           to_owners(now);
                         },
                     .on_delete = to_owners});
}

void controller::watch_mapped(informer& related, map_func map, update_filter filter) {
  auto to_keys = [this, map](const object_ptr& o) {
    for (const auto& k : map(*o)) enqueue(k);
  };
  related.add_handler({.on_add = to_keys,
                       .on_update =
                           [to_keys, filter](const object_ptr& old, const object_ptr& now) {
                             if (filter && !filter(*old, *now)) return;
                             to_keys(old);
                             to_keys(now);
                           },
                       .on_delete = to_keys});
}

void controller::start() {
  if (!workers_.empty()) return;
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this] { work(); });
  }
  log::info("controller started", {{"controller", options_.name}, {"workers", std::to_string(options_.workers)}});
}

bool controller::stop(clock::duration grace) {
  if (workers_.empty()) {
    queue_->shut_down();
    return true;
  }
  bool drained = queue_->shut_down_with_drain(grace);
  if (!drained) {
    log::warn("reconciles still running at the shutdown deadline", {{"controller", options_.name}});
  }
  workers_.clear();  // joins: a running reconcile is waited for, never abandoned mid-write
  return drained;
}

void controller::work() {
  while (auto key = queue_->get()) {
    process(*key);
    queue_->done(*key);
  }
}

void controller::process(const std::string& key) {
  const request req = request::from_key(key);
  const clock& c = options_.time_source != nullptr ? *options_.time_source : default_clock();
  const auto started = c.now();
  prometheus::Gauge* active = active_workers_ ? &active_workers_->Add({{"controller", options_.name}}) : nullptr;
  if (active) active->Increment();
  std::string result;
  try {
    reconcile_result r = reconcile_(req);
    if (r.requeue_after && r.requeue_after->count() > 0) {
      queue_->forget(key);
      queue_->add_after(key, *r.requeue_after);
      result = "requeue_after";
    } else if (r.requeue) {
      queue_->add_rate_limited(key);
      result = "requeue";
    } else {
      queue_->forget(key);
      result = "success";
    }
  } catch (const std::exception& e) {
    queue_->add_rate_limited(key);
    const auto* api = dynamic_cast<const kube::api_error*>(&e);
    if (api != nullptr && kube::is_namespace_terminating(*api)) {
      // Not a failure of the reconcile: the namespace is being deleted and nothing new may be
      // created there. The retry finds the object gone or being deleted (its finalizer path).
      result = "requeue";
      log::info("namespace is being deleted: retried later",
                {{"controller", options_.name}, {"namespace", req.ns}, {"name", req.name}, {"error", e.what()}});
    } else {
      result = "error";
      log::error("reconcile failed", {{"controller", options_.name},
                                      {"namespace", req.ns},
                                      {"name", req.name},
                                      {"error", e.what()},
                                      {"retries", std::to_string(queue_->num_requeues(key))}});
    }
  }
  const double seconds = std::chrono::duration<double>(c.now() - started).count();
  if (active) active->Decrement();
  if (reconcile_total_ != nullptr) {
    reconcile_total_->Add({{"controller", options_.name}, {"result", result}}).Increment();
    if (result == "error") reconcile_errors_->Add({{"controller", options_.name}}).Increment();
    reconcile_time_->Add({{"controller", options_.name}}, reconcile_buckets()).Observe(seconds);
  }
  log::debug("reconciled", {{"controller", options_.name},
                            {"namespace", req.ns},
                            {"name", req.name},
                            {"result", result},
                            {"seconds", std::to_string(seconds)}});
}

}  // namespace datashare::runtime
