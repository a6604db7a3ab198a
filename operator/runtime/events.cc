#include "operator/runtime/events.h"

#include <cinttypes>
#include <cstdio>
#include <stdexcept>
#include <utility>

namespace datashare::runtime {
namespace {

// The API's limits (events.k8s.io/v1 validation).
constexpr std::size_t kReasonLimit = 128;
constexpr std::size_t kActionLimit = 128;
constexpr std::size_t kNoteLimit = 1024;
constexpr std::size_t kNameLimit = 253;

// At most `limit` bytes, never cutting a UTF-8 sequence in two.
std::string truncate_utf8(std::string_view s, std::size_t limit) {
  if (s.size() <= limit) return std::string(s);
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end));
}

std::string string_at(const kube::json& object, const char* field) {
  auto it = object.find(field);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const char* type_name(event_type t) {
  return t == event_type::warning ? "Warning" : "Normal";
}

std::string describe(const object_reference& r) {
  return r.kind + " " + (r.ns.empty() ? r.name : r.ns + "/" + r.name);
}

// "event Warning SyncFailed about ConfigMap shop/orders", for messages.
std::string describe(event_type type, const std::string& reason, const object_reference& r) {
  return std::string("event ") + type_name(type) + " " + reason + " about " + describe(r);
}

}  // namespace

object_reference reference_to(const kube::json& object) {
  object_reference r;
  if (!object.is_object()) return r;
  r.api_version = string_at(object, "apiVersion");
  r.kind = string_at(object, "kind");
  if (auto m = object.find("metadata"); m != object.end() && m->is_object()) {
    r.ns = string_at(*m, "namespace");
    r.name = string_at(*m, "name");
    r.uid = string_at(*m, "uid");
    r.resource_version = string_at(*m, "resourceVersion");
  }
  return r;
}

object_reference reference_to(const kube::json& object, const kube::resource_kind& kind) {
  object_reference r = reference_to(object);
  if (r.api_version.empty()) r.api_version = kind.api_version();
  if (r.kind.empty()) r.kind = kind.kind;
  return r;
}

event_recorder::event_recorder(kube::client& client, event_recorder_options options)
    : client_(client),
      options_(std::move(options)),
      clock_(options_.time_source != nullptr ? *options_.time_source : default_clock()) {
  if (options_.reporting_controller.empty() || options_.reporting_instance.empty()) {
    throw std::invalid_argument("event recorder: reporting_controller and reporting_instance are required");
  }
  if (!options_.wall_now) options_.wall_now = system_wall_clock;
  if (options_.max_series == 0) options_.max_series = 1;
  writer_ = std::jthread([this](const std::stop_token& stop) { write_loop(stop); });
}

event_recorder::~event_recorder() {
  writer_.request_stop();
  writer_.join();
  std::size_t left = 0;
  {
    std::lock_guard lock(mu_);
    left = pending_.size();
    counters_.dropped += left;
    completed_ += left;
    pending_.clear();
  }
  if (left > 0) fail(std::to_string(left) + " events not written: the recorder was stopped");
}

void event_recorder::record(const object_reference& regarding, event_type type, std::string_view reason,
                            std::string_view action, std::string_view note) noexcept {
  try {
    pending_event e{regarding,
                    type,
                    truncate_utf8(reason, kReasonLimit),
                    truncate_utf8(action, kActionLimit),
                    truncate_utf8(note, kNoteLimit),
                    clock_.now(),
                    options_.wall_now()};
    bool full = false;
    {
      std::lock_guard lock(mu_);
      if (pending_.size() >= options_.max_pending) {
        full = true;
        ++counters_.dropped;
      } else {
        pending_.push_back(std::move(e));
        ++enqueued_;
      }
    }
    if (full) {
      if (options_.on_error) {
        options_.on_error(describe(type, std::string(reason), regarding) + " dropped: " +
                          std::to_string(options_.max_pending) + " events already waiting to be written");
      }
      return;
    }
    changed_.notify_all();
  } catch (...) {
    // Out of memory, or on_error threw: an event is not worth failing the caller for.
  }
}

bool event_recorder::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const uint64_t target = enqueued_;
  return changed_.wait_for(lock, timeout, [&] { return completed_ >= target; });
}

event_recorder::counters event_recorder::stats() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void event_recorder::fail(const std::string& message) {
  {
    std::lock_guard lock(mu_);
    ++counters_.failed;
  }
  if (!options_.on_error) return;
  try {
    options_.on_error(message);
  } catch (...) {
    // on_error must not throw; if it does, the writer thread carries on regardless.
  }
}

void event_recorder::write_loop(const std::stop_token& stop) {
  for (;;) {
    pending_event e;
    {
      std::unique_lock lock(mu_);
      changed_.wait(lock, stop, [&] { return !pending_.empty(); });
      if (stop.stop_requested()) return;
      e = std::move(pending_.front());
      pending_.pop_front();
    }
    try {
      write(e);
    } catch (const std::exception& error) {
      const auto* api = dynamic_cast<const kube::api_error*>(&error);
      if (api != nullptr && kube::is_namespace_terminating(*api)) {
        // The namespace and everything in it are being deleted: an Event there would go with them.
        std::lock_guard lock(mu_);
        ++counters_.dropped;
      } else {
        fail(describe(e.type, e.reason, e.regarding) + " not written: " + error.what());
      }
    } catch (...) {
      fail(describe(e.type, e.reason, e.regarding) + " not written");
    }
    {
      std::lock_guard lock(mu_);
      ++completed_;
    }
    changed_.notify_all();
  }
}

std::string event_recorder::unique_name(const std::string& object_name, wall_time_point t) {
  // client-go names an Event "<object name>.<unix nanoseconds in hex>". Object names of some kinds
  // (RBAC's "system:..." roles) are not valid Event names, so anything outside a DNS subdomain's
  // alphabet becomes '-'. Nanoseconds are kept strictly increasing so that two events recorded
  // within one clock tick still get distinct names.
  std::string prefix;
  for (char c : object_name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    prefix.push_back((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ? c : '-');
  }
  while (!prefix.empty() && (prefix.back() == '-' || prefix.back() == '.')) prefix.pop_back();
  while (!prefix.empty() && (prefix.front() == '-' || prefix.front() == '.')) prefix.erase(0, 1);
  if (prefix.empty()) prefix = "event";
  constexpr std::size_t kSuffix = 1 + 16;  // "." and up to 16 hex digits
  if (prefix.size() > kNameLimit - kSuffix) prefix.resize(kNameLimit - kSuffix);

  const int64_t nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  last_name_nanos_ = std::max(nanos, last_name_nanos_ + 1);
  char hex[24];
  std::snprintf(hex, sizeof hex, ".%" PRIx64, static_cast<uint64_t>(last_name_nanos_));
  return prefix + hex;
}

kube::json event_recorder::new_event(const pending_event& e, std::string& name_out) {
  const object_reference& r = e.regarding;
  kube::json regarding = kube::json::object();
  auto put = [&](const char* field, const std::string& value) {
    if (!value.empty()) regarding[field] = value;
  };
  put("apiVersion", r.api_version);
  put("kind", r.kind);
  put("namespace", r.ns);
  put("name", r.name);
  put("uid", r.uid);
  put("resourceVersion", r.resource_version);

  name_out = unique_name(r.name, e.observed_wall);
  kube::json event = {
      {"apiVersion", kube::resources::events.api_version()},
      {"kind", kube::resources::events.kind},
      // Events about cluster-scoped objects live in "default", as client-go puts them.
      {"metadata", {{"name", name_out}, {"namespace", r.ns.empty() ? "default" : r.ns}}},
      {"eventTime", format_rfc3339_micro(e.observed_wall)},
      {"reportingController", options_.reporting_controller},
      {"reportingInstance", options_.reporting_instance},
      {"action", e.action},
      {"reason", e.reason},
      {"type", type_name(e.type)},
      {"regarding", std::move(regarding)},
  };
  if (!e.note.empty()) event["note"] = e.note;
  return event;
}

void event_recorder::remember(const std::string& key, series s) {
  lru_.push_front(key);
  s.lru = lru_.begin();
  series_.insert_or_assign(key, std::move(s));
  while (series_.size() > options_.max_series) {
    series_.erase(lru_.back());
    lru_.pop_back();
  }
}

void event_recorder::write(pending_event& e) {
  const object_reference& r = e.regarding;
  std::string key;
  for (const std::string* part : {&r.api_version, &r.kind, &r.ns, &r.name, &r.uid, &std::as_const(e.reason),
                                  &std::as_const(e.action), &std::as_const(e.note)}) {
    key += *part;
    key += '\x1f';
  }
  key += type_name(e.type);
  const std::string what = describe(e.type, e.reason, r);

  if (auto it = series_.find(key); it != series_.end()) {
    if (e.observed - it->second.last_observed <= options_.series_window) {
      series& s = it->second;
      s.count += 1;
      s.last_observed = e.observed;
      lru_.splice(lru_.begin(), lru_, s.lru);
      const kube::json patch = {
          {"series", {{"count", s.count}, {"lastObservedTime", format_rfc3339_micro(e.observed_wall)}}}};
      try {
        client_.merge_patch(kube::resources::events, s.ns, s.name, patch);
        std::lock_guard lock(mu_);
        ++counters_.patched;
      } catch (const kube::api_error& error) {
        if (!kube::is_not_found(error)) {
          // The count stays: the next repeat's patch carries the total.
          fail(what + ": series not updated: " + error.what());
          return;
        }
        // Events expire (an hour by default): write it again under its name, with the count so far.
        kube::json again = s.event;
        again["series"] = patch["series"];
        client_.create(kube::resources::events, again);
        std::lock_guard lock(mu_);
        ++counters_.created;
      }
      return;
    }
    // The series has ended: the next occurrence starts a new Event.
    lru_.erase(it->second.lru);
    series_.erase(it);
  }

  std::string name;
  kube::json event = new_event(e, name);
  client_.create(kube::resources::events, event);
  {
    std::lock_guard lock(mu_);
    ++counters_.created;
  }
  const std::string ns = event["metadata"]["namespace"];
  remember(key, series{.ns = ns, .name = name, .event = std::move(event), .count = 1, .last_observed = e.observed});
}

}  // namespace datashare::runtime
