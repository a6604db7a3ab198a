#pragma once
// An events recorder: events.k8s.io/v1 Events about objects, what `kubectl describe` and
// `kubectl events` show users, written the way client-go's tools/events writes them.
//
// Repeats are folded into a series, as client-go does: the same event (same object, type,
// reason, action and note) seen again within `series_window` of its last occurrence increments
// the Event's series.count and moves series.lastObservedTime, by a merge patch, instead of
// creating another Event. Unlike client-go, which batches series updates every 30 minutes, each
// repeat is patched at once, so the count users see is current.
//
// Recording never blocks on the API server and never throws: record() queues the event and a
// writer thread sends it. Events are best-effort by design (the API server may drop them too),
// so a write that fails is reported through on_error and dropped, and so is an event that finds
// the queue full. Memory is bounded: at most `max_pending` queued events and `max_series`
// remembered series (least recently seen forgotten first).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "operator/kube/client.h"
#include "operator/runtime/clock.h"
#include "operator/runtime/rfc3339.h"

namespace datashare::runtime {

// The object an event is about (core/v1 ObjectReference, as Event.regarding).
struct object_reference {
  std::string api_version;
  std::string kind;
  std::string ns;  // empty for cluster-scoped objects
  std::string name;
  std::string uid;
  std::string resource_version;
};

// The reference to an object as the API returned it. Objects from a list have no apiVersion or
// kind; the second form takes them from the resource kind.
object_reference reference_to(const kube::json& object);
object_reference reference_to(const kube::json& object, const kube::resource_kind& kind);

enum class event_type { normal, warning };

struct event_recorder_options {
  // Who writes the events (Event.reportingController), e.g. "datashare.io/operator". Required.
  std::string reporting_controller;
  // Which instance of it (Event.reportingInstance), e.g. the pod name. Required.
  std::string reporting_instance;
  // A repeat within this long of the last occurrence joins its series (client-go: 6 minutes).
  clock::duration series_window = std::chrono::minutes(6);
  // Series remembered for folding repeats (client-go's event cache: 4096).
  std::size_t max_series = 4096;
  // Events waiting for the writer; more are dropped.
  std::size_t max_pending = 1000;
  // Told about every event that could not be written or was dropped. Must not throw.
  std::function<void(const std::string& message)> on_error;
  // Monotonic time for the series window. Null: the real clock. Not owned.
  const clock* time_source = nullptr;
  // Wall time for eventTime and series.lastObservedTime. Empty: the system clock.
  wall_clock wall_now;
};

// record() and flush() may be called from any thread. Owns one writer thread, started by the
// constructor and joined by the destructor. The client and clock must outlive the recorder.
class event_recorder {
 public:
  struct counters {
    uint64_t created = 0;  // Events created
    uint64_t patched = 0;  // repeats folded into a series
    uint64_t failed = 0;   // writes the API server refused or that did not arrive
    uint64_t dropped = 0;  // not written: the queue was full, shutdown, or the namespace is being deleted
  };

  // Throws std::invalid_argument when reporting_controller or reporting_instance is empty.
  event_recorder(kube::client& client, event_recorder_options options);
  // Stops after the write in progress; events still queued are dropped (flush() first to keep them).
  ~event_recorder();

  event_recorder(const event_recorder&) = delete;
  event_recorder& operator=(const event_recorder&) = delete;

  // Queues an event about `regarding`. `reason` (CamelCase, why) and `action` (CamelCase, what
  // was done or tried) are truncated to 128 bytes and `note` (for humans) to 1 KiB, the API's
  // limits. Never throws and never waits for the API server.
  void record(const object_reference& regarding, event_type type, std::string_view reason, std::string_view action,
              std::string_view note) noexcept;

  // Waits until every event recorded before the call has been written (or has failed); false if
  // `timeout` (real time) passed first. For graceful shutdown and tests.
  bool flush(std::chrono::milliseconds timeout);

  counters stats() const;

 private:
  struct pending_event {
    object_reference regarding;
    event_type type = event_type::normal;
    std::string reason;
    std::string action;
    std::string note;
    clock::time_point observed;
    wall_time_point observed_wall;
  };
  // A series: the Event that repeats are folded into.
  struct series {
    std::string ns;
    std::string name;
    kube::json event;  // as created, to create it again should it have expired
    int64_t count = 1;
    clock::time_point last_observed;
    std::list<std::string>::iterator lru;  // position in lru_
  };

  void write_loop(const std::stop_token& stop);
  void write(pending_event& e);
  kube::json new_event(const pending_event& e, std::string& name_out);
  std::string unique_name(const std::string& object_name, wall_time_point t);
  void remember(const std::string& key, series s);
  void fail(const std::string& message);

  kube::client& client_;
  event_recorder_options options_;
  const clock& clock_;

  mutable std::mutex mu_;                // guards the queue, the counters and the sequence numbers
  std::condition_variable_any changed_;  // with the writer's stop token
  std::deque<pending_event> pending_;
  uint64_t enqueued_ = 0;   // sequence number of the last event queued
  uint64_t completed_ = 0;  // events taken off the queue and finished (written, failed or dropped)
  counters counters_;

  // Writer thread only.
  std::unordered_map<std::string, series> series_;
  std::list<std::string> lru_;  // keys of series_, most recently seen first
  int64_t last_name_nanos_ = 0;

  std::jthread writer_;  // last: started once everything above is ready
};

}  // namespace datashare::runtime
