#include "operator/runtime/informer.h"

namespace datashare::runtime {

informer::informer(kube::client& client, watcher_options watch, informer_options options)
    : watcher_(client, std::move(watch)), options_(std::move(options)) {}

informer::~informer() {
  stop();
}

void informer::add_handler(event_handler handler) {
  handlers_.push_back(std::move(handler));
}

void informer::start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread(
      [this](std::stop_token stop) { watcher_.run([this](watcher_event&& e) { deliver(std::move(e)); }, stop); });
}

void informer::stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  thread_.join();
}

bool informer::wait_for_sync(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(sync_mu_);
  sync_cv_.wait_for(lock, timeout, [this] { return store_.has_synced(); });
  return store_.has_synced();
}

void informer::deliver(watcher_event&& event) {
  const bool completes_list = event.type == watcher_event_type::init_done;
  if (!event.object.is_null() && options_.transform) options_.transform(event.object);
  std::function<void(const store_change&)> notify;
  if (!handlers_.empty()) {
    notify = [this](const store_change& c) {
      for (const auto& h : handlers_) {
        if (c.old && c.now) {
          if (h.on_update) h.on_update(c.old, c.now);
        } else if (c.now) {
          if (h.on_add) h.on_add(c.now);
        } else if (c.old) {
          if (h.on_delete) h.on_delete(c.old);
        }
      }
    };
  }
  store_.apply(std::move(event), notify);
  if (completes_list) {
    std::lock_guard lock(sync_mu_);
    sync_cv_.notify_all();
  }
}

}  // namespace datashare::runtime
