#include "operator/runtime/watcher.h"

#include <condition_variable>
#include <mutex>

#include "operator/kube/json_access.h"

namespace datashare::runtime {

reconnect_backoff::reconnect_backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                                     std::chrono::milliseconds reset_after, const clock& time_source)
    : initial_(initial), max_(max), reset_after_(reset_after), clock_(time_source) {}

std::chrono::milliseconds reconnect_backoff::next() {
  const auto now = clock_.now();
  if (current_.count() > 0 && now - last_failure_ > reset_after_) current_ = std::chrono::milliseconds(0);
  current_ = current_.count() == 0 ? initial_ : std::min(current_ * 2, max_);
  last_failure_ = now;
  // Full jitter over [current/2, current]: never zero, never more than the cap.
  std::uniform_int_distribution<int64_t> d(current_.count() / 2, current_.count());
  return std::chrono::milliseconds(d(rng_));
}

watcher::watcher(kube::client& client, watcher_options options)
    : client_(client),
      options_(std::move(options)),
      clock_(options_.time_source != nullptr ? *options_.time_source : default_clock()),
      backoff_(options_.backoff_initial, options_.backoff_max, options_.backoff_reset_after, clock_) {}

std::string watcher::resource_version() const {
  std::lock_guard lock(rv_mu_);
  return resource_version_;
}

void watcher::report(const std::string& what, const std::exception& e) {
  if (options_.on_error) options_.on_error(what, e);
}

bool watcher::pause(std::chrono::milliseconds delay, std::stop_token stop) {
  std::mutex mu;
  std::condition_variable cv;
  // Registered before taking the lock: when stop is already requested the callback runs right
  // here, and it takes the lock itself so that a notify cannot fall between check and wait.
  std::stop_callback wake(stop, [&] {
    std::lock_guard l(mu);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  const auto deadline = clock_.now() + delay;
  while (!stop.stop_requested() && clock_.now() < deadline) clock_.wait_until(cv, lock, deadline);
  return !stop.stop_requested();
}

bool watcher::list_into(const std::function<void(watcher_event&&)>& sink, std::stop_token stop) {
  kube::list_options opts{.label_selector = options_.label_selector,
                          .field_selector = options_.field_selector,
                          .limit = options_.page_size};
  sink({watcher_event_type::init_begin, {}});
  for (;;) {
    if (stop.stop_requested()) return false;
    kube::list_page page = client_.list(options_.kind, options_.ns, opts);
    for (auto& item : page.items) {
      // Lists leave kind/apiVersion off their items; put them back so the cache holds whole objects.
      if (!item.contains("kind")) item["kind"] = options_.kind.kind;
      if (!item.contains("apiVersion")) item["apiVersion"] = options_.kind.api_version();
      sink({watcher_event_type::init_apply, std::move(item)});
    }
    if (page.continue_token.empty()) {
      {
        std::lock_guard lock(rv_mu_);
        resource_version_ = page.resource_version;
      }
      sink({watcher_event_type::init_done, {}});
      ++lists_;
      return true;
    }
    opts.continue_token = page.continue_token;
  }
}

void watcher::watch_into(const std::function<void(watcher_event&&)>& sink, std::stop_token stop) {
  std::uniform_int_distribution<int> timeout(options_.watch_timeout_min_seconds, options_.watch_timeout_max_seconds);
  kube::watch_options opts{.resource_version = resource_version(),
                           .label_selector = options_.label_selector,
                           .field_selector = options_.field_selector,
                           .allow_bookmarks = true,
                           .timeout_seconds = timeout(rng_)};
  ++watches_;
  client_.watch(
      options_.kind, options_.ns, opts,
      [&](kube::watch_event&& ev) {
        if (auto m = ev.object.find("metadata"); m != ev.object.end() && m->is_object()) {
          std::string rv = kube::string_member(*m, "resourceVersion");
          if (!rv.empty()) {
            std::lock_guard lock(rv_mu_);
            resource_version_ = std::move(rv);
          }
        }
        switch (ev.type) {
          case kube::watch_event_type::added:
          case kube::watch_event_type::modified:
            sink({watcher_event_type::apply, std::move(ev.object)});
            break;
          case kube::watch_event_type::deleted:
            sink({watcher_event_type::remove, std::move(ev.object)});
            break;
          case kube::watch_event_type::bookmark:
          case kube::watch_event_type::error:
            break;
        }
        return !stop.stop_requested();
      },
      stop);
}

void watcher::run(const std::function<void(watcher_event&&)>& sink, std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (!listed_) {
      try {
        listed_ = list_into(sink, stop);
        if (listed_) backoff_.reset();
      } catch (const kube::api_error& e) {
        report("list " + options_.kind.qualified_name(), e);
        if (!pause(backoff_.next(), stop)) return;
      }
      continue;
    }
    const auto started = clock_.now();
    const std::string rv_before = resource_version();
    try {
      watch_into(sink, stop);
      // The server closed the stream (its timeout): resume from where we are. A stream that
      // closes at once with nothing in it is a failure in disguise; don't spin on it.
      if (clock_.now() - started < std::chrono::seconds(1) && resource_version() == rv_before) {
        if (!pause(backoff_.next(), stop)) return;
      }
    } catch (const kube::api_error& e) {
      if (kube::is_gone(e)) {
        // Our resourceVersion is older than the server keeps: only a new list gives a correct view.
        report("watch " + options_.kind.qualified_name() + " expired, re-listing", e);
        listed_ = false;
        continue;
      }
      report("watch " + options_.kind.qualified_name(), e);
      if (!pause(backoff_.next(), stop)) return;
    }
  }
}

}  // namespace datashare::runtime
