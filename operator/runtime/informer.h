#pragma once
// An informer: a watcher feeding a store on its own thread, telling handlers what changed.
// Controllers read the store (never the API server) and enqueue keys from the handlers.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "operator/runtime/store.h"
#include "operator/runtime/watcher.h"

namespace datashare::runtime {

struct event_handler {
  std::function<void(const object_ptr& now)> on_add;
  std::function<void(const object_ptr& old, const object_ptr& now)> on_update;
  std::function<void(const object_ptr& old)> on_delete;
};

struct informer_options {
  // Applied to every object before it is stored; default strips managedFields.
  std::function<void(kube::json&)> transform = strip_managed_fields;
};

// Owns its store and one thread (started by start(), joined by stop() or the destructor).
// Handlers run on that thread, in event order; they must be quick (enqueue a key, no I/O).
// add_handler() and add_index() are for before start(); everything else is thread-safe.
class informer {
 public:
  informer(kube::client& client, watcher_options watch, informer_options options = {});
  ~informer();

  informer(const informer&) = delete;
  informer& operator=(const informer&) = delete;

  void add_handler(event_handler handler);
  store& cache() { return store_; }
  const store& cache() const { return store_; }
  const watcher& source() const { return watcher_; }

  void start();
  void stop();
  bool has_synced() const { return store_.has_synced(); }
  // Blocks until the first list is stored, or the timeout; returns has_synced().
  bool wait_for_sync(std::chrono::milliseconds timeout) const;

 private:
  void deliver(watcher_event&& event);

  watcher watcher_;
  informer_options options_;
  store store_;
  std::vector<event_handler> handlers_;
  mutable std::mutex sync_mu_;
  mutable std::condition_variable sync_cv_;
  std::jthread thread_;
};

}  // namespace datashare::runtime
