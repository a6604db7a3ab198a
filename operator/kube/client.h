#pragma once
// A Kubernetes REST client for any resource, objects as JSON (nlohmann::json).
//
// Failed requests throw api_error with a code to branch on (error.h). Requests the server did
// not process (429) are retried for every verb, honouring Retry-After; transport errors and 5xx
// are retried for reads only, so a write is never applied twice behind the caller's back.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>

#include "operator/kube/error.h"
#include "operator/kube/http.h"
#include "operator/kube/resource.h"

namespace datashare::kube {

using json = nlohmann::json;

struct list_options {
  std::string label_selector;
  std::string field_selector;
  int64_t limit = 0;  // 0: no paging
  std::string continue_token;
  std::string resource_version;  // "" (most recent, quorum read) or "0" (any, from the watch cache)
};

struct list_page {
  json items = json::array();
  std::string resource_version;  // of the list, to start a watch from
  std::string continue_token;    // empty on the last page
};

struct watch_options {
  std::string resource_version;  // watch changes after this version
  std::string label_selector;
  std::string field_selector;
  bool allow_bookmarks = true;
  int timeout_seconds = 0;  // server-side timeout; 0: the server's default
};

enum class watch_event_type { added, modified, deleted, bookmark, error };

struct watch_event {
  watch_event_type type;
  json object;  // the object; for `error`, a Status
};

struct delete_options {
  std::optional<std::string> propagation_policy;  // Foreground | Background | Orphan
  std::optional<std::string> precondition_uid;
  std::optional<std::string> precondition_resource_version;
};

struct apply_options {
  std::string field_manager;  // required
  bool force = false;         // take over fields owned by other managers
};

struct client_options {
  int max_attempts = 5;  // including the first
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_cap{5000};
  // Injected for tests; default sleeps the calling thread.
  std::function<void(std::chrono::milliseconds)> sleep;
  // Called after every HTTP exchange (code 0 for a transport error): rest_client_requests_total.
  std::function<void(const std::string& method, int code)> on_request;
};

// Thread-safe (the transport is).
class client {
 public:
  explicit client(std::shared_ptr<http_transport> transport, client_options options = {});

  json get(const resource_kind& kind, const std::string& ns, const std::string& name);
  list_page list(const resource_kind& kind, const std::string& ns, const list_options& options = {});
  // Every page of a list (following continue tokens; a 410 mid-way restarts it), as one page.
  list_page list_all(const resource_kind& kind, const std::string& ns, list_options options = {});

  json create(const resource_kind& kind, const json& object);
  // PUT: fails with errc::conflict when metadata.resourceVersion is not the stored one.
  json update(const resource_kind& kind, const json& object);
  json update_status(const resource_kind& kind, const json& object);
  // RFC 7386 JSON merge patch.
  json merge_patch(const resource_kind& kind, const std::string& ns, const std::string& name, const json& patch,
                   bool status_subresource = false);
  // Server-side apply: `object` is the caller's whole intent for the fields it manages.
  json apply(const resource_kind& kind, const json& object, const apply_options& options);
  json apply_status(const resource_kind& kind, const json& object, const apply_options& options);
  // Returns false when the object was already gone.
  bool remove(const resource_kind& kind, const std::string& ns, const std::string& name,
              const delete_options& options = {});

  // One watch request: calls `on_event` for each event until the server closes the stream
  // (timeout), `stop` is requested, or `on_event` returns false. Throws api_error for a failed
  // request (errc::gone when the resourceVersion is too old).
  void watch(const resource_kind& kind, const std::string& ns, const watch_options& options,
             const std::function<bool(watch_event&&)>& on_event, std::stop_token stop);

  http_transport& transport() { return *transport_; }

 private:
  json call(http_request request, bool idempotent);

  std::shared_ptr<http_transport> transport_;
  client_options options_;
};

// "namespace/name" or "name" for cluster-scoped objects: the key of caches and work queues.
std::string object_key(const json& object);
std::string namespace_of(const json& object);
std::string name_of(const json& object);

}  // namespace datashare::kube
