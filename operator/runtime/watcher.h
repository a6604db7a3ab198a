#pragma once
// The list/watch state machine (kube-rs's `watcher`, client-go's Reflector loop), independent of
// what consumes it:
//
//   empty ──list (paged)──► watching(rv) ──watch from rv──► watching(rv') ...
//     ▲                          │ stream closed by the server: watch again from the last rv
//     └──── 410 Gone ────────────┘ other failures: wait (backoff) and watch again from rv
//
// A full list is delivered as init_begin, init_apply × N, init_done, so a consumer can build the
// new state aside and swap it in whole (a re-list after 410 may have missed deletions). Then each
// change is apply or remove. Bookmarks only move the resume point.

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <stop_token>
#include <string>

#include "operator/kube/client.h"
#include "operator/runtime/clock.h"

namespace datashare::runtime {

enum class watcher_event_type { init_begin, init_apply, init_done, apply, remove };

struct watcher_event {
  watcher_event_type type;
  kube::json object;  // empty for init_begin and init_done
};

struct watcher_options {
  kube::resource_kind kind;
  std::string ns;  // "" = all namespaces
  std::string label_selector;
  std::string field_selector;
  int64_t page_size = 500;
  // Reconnect backoff (client-go's reflector): 800 ms doubling to 30 s, full jitter, reset once
  // nothing has failed for `backoff_reset_after`.
  std::chrono::milliseconds backoff_initial{800};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds backoff_reset_after{120000};
  // Server-side watch timeout, drawn from [min, max] per request so that many watchers do not
  // reconnect in step (client-go: 5–10 min).
  int watch_timeout_min_seconds = 300;
  int watch_timeout_max_seconds = 600;
  const clock* time_source = nullptr;  // null: the real clock
  // Told about every failure before the watcher waits and tries again (for logs and metrics).
  std::function<void(const std::string& what, const std::exception& error)> on_error;
};

// Exponential backoff with full jitter that forgets past failures after a quiet period.
// Not thread-safe: one per watcher.
class reconnect_backoff {
 public:
  reconnect_backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                    std::chrono::milliseconds reset_after, const clock& time_source);
  // The delay before the next attempt.
  std::chrono::milliseconds next();
  void reset() { current_ = std::chrono::milliseconds(0); }

 private:
  std::chrono::milliseconds initial_, max_, reset_after_;
  const clock& clock_;
  std::chrono::milliseconds current_{0};
  clock::time_point last_failure_{};
  std::mt19937 rng_{std::random_device{}()};
};

// Runs on the thread that calls run(). Not thread-safe otherwise; counters may be read from any
// thread.
class watcher {
 public:
  watcher(kube::client& client, watcher_options options);

  // Lists and watches until `stop` is requested, delivering every change to `sink` in order on
  // this thread. Never throws for API failures: they go to on_error and are retried.
  void run(const std::function<void(watcher_event&&)>& sink, std::stop_token stop);

  // For metrics and tests.
  uint64_t lists() const { return lists_.load(); }
  uint64_t watches() const { return watches_.load(); }
  std::string resource_version() const;

 private:
  bool list_into(const std::function<void(watcher_event&&)>& sink, std::stop_token stop);
  void watch_into(const std::function<void(watcher_event&&)>& sink, std::stop_token stop);
  // Waits `delay` on the clock; returns false when stopped first.
  bool pause(std::chrono::milliseconds delay, std::stop_token stop);
  void report(const std::string& what, const std::exception& e);

  kube::client& client_;
  watcher_options options_;
  const clock& clock_;
  reconnect_backoff backoff_;
  std::mt19937 rng_{std::random_device{}()};
  bool listed_ = false;
  mutable std::mutex rv_mu_;
  std::string resource_version_;
  std::atomic<uint64_t> lists_{0};
  std::atomic<uint64_t> watches_{0};
};

}  // namespace datashare::runtime
