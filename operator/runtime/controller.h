#pragma once
// A controller: a work queue of object keys fed by informers, drained by N workers that call
// one reconcile function (kube-rs's Controller + runner, controller-runtime's controller).
//
// Reconcile is level-based: it gets only the key, reads the current state from caches, and
// converges it. It never learns which event woke it. The queue guarantees one key is never
// reconciled twice at once. Each outcome maps to one queue operation and one metric label:
//
//   reconcile throws                → add_rate_limited(key)   result="error"
//   returns {.requeue_after = d}    → forget; add_after(key,d) result="requeue_after"
//   returns {.requeue = true}       → add_rate_limited(key)   result="requeue"
//   returns {}                      → forget(key)             result="success"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "operator/runtime/informer.h"
#include "operator/runtime/work_queue.h"

namespace datashare::runtime {

struct request {
  std::string ns;  // "" for cluster-scoped objects
  std::string name;

  std::string key() const { return ns.empty() ? name : ns + "/" + name; }
  static request from_key(const std::string& key);
};

struct reconcile_result {
  bool requeue = false;                          // again, with the rate limiter's backoff
  std::optional<clock::duration> requeue_after;  // again after this delay (periodic work)
};

using reconcile_func = std::function<reconcile_result(const request&)>;

// Maps a related object to the keys of the objects whose reconcile it affects.
using map_func = std::function<std::vector<std::string>(const kube::json& object)>;

// Decides whether an update (old → now) enqueues anything (controller-runtime's predicates).
// Adds and deletes always do. Null: every update does.
using update_filter = std::function<bool(const kube::json& old, const kube::json& now)>;

// True unless the two versions differ only in status, resourceVersion or managedFields: the
// status writes of the controllers themselves then wake nobody (GenerationChangedPredicate,
// but also right for kinds without a generation such as ConfigMaps). Note: a periodic resync
// delivering an unchanged object is filtered too; controllers that need periodic work requeue.
bool changed_outside_status(const kube::json& old, const kube::json& now);

// True when the spec differs or the object started (or stopped) being deleted: for watchers that
// read only those (finalizer, label or status writes of the object's own controller then wake
// nobody). Objects without a spec compare whole, minus metadata and status.
bool spec_or_deletion_changed(const kube::json& old, const kube::json& now);

struct controller_options {
  std::string name;  // metrics label and log field
  int workers = 1;
  const clock* time_source = nullptr;        // null: the real clock
  prometheus::Registry* registry = nullptr;  // null: no metrics
  std::unique_ptr<rate_limiter> limiter;     // null: controller-runtime's default
};

// Owns its queue and worker threads. watch_*() before start(); start()/stop() from one thread.
// The reconcile function runs on the workers, concurrently for different keys.
class controller {
 public:
  controller(controller_options options, reconcile_func reconcile);
  ~controller();

  controller(const controller&) = delete;
  controller& operator=(const controller&) = delete;

  // The primary kind: each change enqueues the object's own key.
  void watch_for(informer& primary, update_filter filter = {});
  // Objects this controller creates: each change enqueues the owner's key (an ownerReference of
  // `owner_kind`, same namespace). controller_only: only the ownerReference with controller=true.
  void watch_owned(informer& owned, const std::string& owner_kind, bool controller_only = true,
                   update_filter filter = {});
  // Anything else: `map` says which keys an object affects (e.g. the policies of a product).
  void watch_mapped(informer& related, map_func map, update_filter filter = {});

  void start();
  // Stops intake at once, lets in-flight reconciles finish for up to `grace`, joins the workers.
  // Returns false when some reconcile was still running at the deadline (the workers are then
  // detached from the queue but still joined: a reconcile cannot be interrupted).
  bool stop(clock::duration grace = std::chrono::seconds(30));

  work_queue& queue() { return *queue_; }
  const std::string& name() const { return options_.name; }

 private:
  void enqueue(const std::string& key) { queue_->add(key); }
  void work();
  void process(const std::string& key);

  controller_options options_;
  reconcile_func reconcile_;
  std::unique_ptr<work_queue> queue_;
  std::vector<std::jthread> workers_;
  prometheus::Family<prometheus::Counter>* reconcile_total_ = nullptr;
  prometheus::Family<prometheus::Counter>* reconcile_errors_ = nullptr;
  prometheus::Family<prometheus::Histogram>* reconcile_time_ = nullptr;
  prometheus::Family<prometheus::Gauge>* active_workers_ = nullptr;
};

}  // namespace datashare::runtime
