#include "operator/kube/client.h"

#include <chrono>
#include <random>
#include <thread>

#include "common/log.h"
#include "operator/kube/json_access.h"

namespace datashare::kube {
namespace {

void add_query(std::string& target, const std::string& key, const std::string& value) {
  if (value.empty()) return;
  target += (target.find('?') == std::string::npos ? '?' : '&');
  target += key + "=" + url_escape(value);
}

std::string object_path_of(const resource_kind& kind, const json& object) {
  const std::string name = name_of(object);
  if (name.empty()) throw std::invalid_argument(kind.kind + ": metadata.name is required");
  return kind.object_path(kind.namespaced ? namespace_of(object) : "", name);
}

std::string describe(const http_request& r) {
  return r.method + " " + r.target;
}

}  // namespace

std::string namespace_of(const json& object) {
  auto m = object.find("metadata");
  if (m == object.end() || !m->is_object()) return {};
  return string_member(*m, "namespace");
}

std::string name_of(const json& object) {
  auto m = object.find("metadata");
  if (m == object.end() || !m->is_object()) return {};
  return string_member(*m, "name");
}

std::string object_key(const json& object) {
  std::string ns = namespace_of(object);
  return ns.empty() ? name_of(object) : ns + "/" + name_of(object);
}

client::client(std::shared_ptr<http_transport> transport, client_options options)
    : transport_(std::move(transport)), options_(std::move(options)) {
  if (!options_.sleep) options_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
  if (options_.max_attempts < 1) options_.max_attempts = 1;
}

json client::call(http_request request, bool idempotent) {
  thread_local std::mt19937 rng{std::random_device{}()};
  for (int attempt = 1;; ++attempt) {
    std::optional<api_error> failure;
    try {
      const auto sent = std::chrono::steady_clock::now();
      http_response resp = transport_->send(request);
      if (options_.on_request) options_.on_request(request.method, resp.status);
      if (log::enabled(log::level::debug)) {
        // One line per request, as client-go logs them at -v=6: what an operator costs the API server.
        const auto us =
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - sent).count();
        log::debug("api request", {{"verb", request.method},
                                   {"target", request.target},
                                   {"status", std::to_string(resp.status)},
                                   {"ms", std::to_string(us / 1000) + "." + std::to_string(us % 1000 / 100)}});
      }
      if (resp.status >= 200 && resp.status < 300) {
        if (resp.body.empty()) return json::object();
        if (nested_deeper_than(resp.body, kMaxJsonDepth)) {
          throw api_error(errc::unexpected, resp.status, "Unexpected",
                          "response nests deeper than " + std::to_string(kMaxJsonDepth) + " levels", describe(request));
        }
        auto parsed = json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
        if (parsed.is_discarded()) {
          throw api_error(errc::unexpected, resp.status, "Unexpected", "response is not JSON", describe(request));
        }
        return parsed;
      }
      failure = error_from_response(resp.status, resp.body, describe(request), resp.header("retry-after"));
    } catch (api_error& e) {
      if (e.code() == errc::transport && options_.on_request) options_.on_request(request.method, 0);
      failure = std::move(e);
    }
    // 429: the server did not process it, so any verb may be sent again.
    const bool may_retry = failure->code() == errc::too_many_requests || (idempotent && failure->retryable());
    if (!may_retry || attempt >= options_.max_attempts) throw *failure;
    auto delay = failure->retry_after().value_or(std::chrono::milliseconds(0));
    if (delay.count() == 0) {
      std::chrono::milliseconds exp = options_.backoff_base * (int64_t{1} << std::min(attempt - 1, 16));
      exp = std::min(exp, options_.backoff_cap);
      // Full jitter: many clients retrying together do not stampede the server again.
      std::uniform_int_distribution<int64_t> jitter(exp.count() / 2, exp.count());
      delay = std::chrono::milliseconds(jitter(rng));
    }
    options_.sleep(delay);
  }
}

json client::get(const resource_kind& kind, const std::string& ns, const std::string& name) {
  return call({"GET", kind.object_path(ns, name), "", "", {}}, true);
}

list_page client::list(const resource_kind& kind, const std::string& ns, const list_options& options) {
  std::string target = kind.collection_path(ns);
  add_query(target, "labelSelector", options.label_selector);
  add_query(target, "fieldSelector", options.field_selector);
  if (options.limit > 0) add_query(target, "limit", std::to_string(options.limit));
  add_query(target, "continue", options.continue_token);
  add_query(target, "resourceVersion", options.resource_version);
  json body = call({"GET", target, "", "", {}}, true);
  list_page page;
  if (auto it = body.find("items"); it != body.end() && it->is_array()) page.items = std::move(*it);
  if (auto m = body.find("metadata"); m != body.end() && m->is_object()) {
    page.resource_version = m->value("resourceVersion", "");
    page.continue_token = m->value("continue", "");
  }
  return page;
}

list_page client::list_all(const resource_kind& kind, const std::string& ns, list_options options) {
  const list_options first = options;
  list_page all;
  for (int restarts = 0;;) {
    try {
      list_page page = list(kind, ns, options);
      for (auto& item : page.items) all.items.push_back(std::move(item));
      all.resource_version = page.resource_version;
      if (page.continue_token.empty()) return all;
      options.continue_token = page.continue_token;
      options.resource_version.clear();  // a continue token carries its own version
    } catch (const api_error& e) {
      // The continue token expired (its snapshot was compacted): start over, once or twice.
      if (!is_gone(e) || options.continue_token.empty() || ++restarts > 2) throw;
      all = list_page{};
      options = first;
    }
  }
}

json client::create(const resource_kind& kind, const json& object) {
  return call({"POST",
               kind.collection_path(kind.namespaced ? namespace_of(object) : ""),
               "application/json",
               object.dump(),
               {}},
              false);
}

json client::update(const resource_kind& kind, const json& object) {
  return call({"PUT", object_path_of(kind, object), "application/json", object.dump(), {}}, false);
}

json client::update_status(const resource_kind& kind, const json& object) {
  return call({"PUT", object_path_of(kind, object) + "/status", "application/json", object.dump(), {}}, false);
}

json client::merge_patch(const resource_kind& kind, const std::string& ns, const std::string& name, const json& patch,
                         bool status_subresource) {
  std::string target = kind.object_path(ns, name) + (status_subresource ? "/status" : "");
  return call({"PATCH", target, "application/merge-patch+json", patch.dump(), {}}, false);
}

json client::apply(const resource_kind& kind, const json& object, const apply_options& options) {
  if (options.field_manager.empty()) throw std::invalid_argument("server-side apply needs a field manager");
  std::string target = object_path_of(kind, object);
  add_query(target, "fieldManager", options.field_manager);
  if (options.force) add_query(target, "force", "true");
  // Apply is idempotent by design: the same intent gives the same result.
  return call({"PATCH", target, "application/apply-patch+yaml", object.dump(), {}}, true);
}

json client::apply_status(const resource_kind& kind, const json& object, const apply_options& options) {
  if (options.field_manager.empty()) throw std::invalid_argument("server-side apply needs a field manager");
  std::string target = object_path_of(kind, object) + "/status";
  add_query(target, "fieldManager", options.field_manager);
  if (options.force) add_query(target, "force", "true");
  return call({"PATCH", target, "application/apply-patch+yaml", object.dump(), {}}, true);
}

bool client::remove(const resource_kind& kind, const std::string& ns, const std::string& name,
                    const delete_options& options) {
  json body = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}};
  if (options.propagation_policy) body["propagationPolicy"] = *options.propagation_policy;
  if (options.precondition_uid) body["preconditions"]["uid"] = *options.precondition_uid;
  if (options.precondition_resource_version) {
    body["preconditions"]["resourceVersion"] = *options.precondition_resource_version;
  }
  try {
    call({"DELETE", kind.object_path(ns, name), "application/json", body.dump(), {}}, true);
    return true;
  } catch (const api_error& e) {
    if (is_not_found(e)) return false;
    throw;
  }
}

void client::watch(const resource_kind& kind, const std::string& ns, const watch_options& options,
                   const std::function<bool(watch_event&&)>& on_event, std::stop_token stop) {
  std::string target = kind.collection_path(ns);
  add_query(target, "watch", "true");
  add_query(target, "resourceVersion", options.resource_version);
  add_query(target, "labelSelector", options.label_selector);
  add_query(target, "fieldSelector", options.field_selector);
  if (options.allow_bookmarks) add_query(target, "allowWatchBookmarks", "true");
  if (options.timeout_seconds > 0) add_query(target, "timeoutSeconds", std::to_string(options.timeout_seconds));
  http_request request{"GET", target, "", "", {}};
  std::optional<api_error> bad_line;
  http_response resp = transport_->stream_lines(
      request,
      [&](std::string_view line) {
        if (nested_deeper_than(line, kMaxJsonDepth)) {
          bad_line = api_error(errc::unexpected, 200, "Unexpected",
                               "watch event nests deeper than " + std::to_string(kMaxJsonDepth) + " levels",
                               describe(request));
          return false;
        }
        auto ev = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (!ev.is_object() || !ev.contains("type") || !ev["type"].is_string() || !ev.contains("object")) {
          bad_line = api_error(errc::unexpected, 200, "Unexpected",
                               "watch event is not a JSON event object: " + std::string(line.substr(0, 200)),
                               describe(request));
          return false;
        }
        const std::string type = ev["type"].get<std::string>();
        watch_event out{watch_event_type::error, std::move(ev["object"])};
        if (type == "ADDED")
          out.type = watch_event_type::added;
        else if (type == "MODIFIED")
          out.type = watch_event_type::modified;
        else if (type == "DELETED")
          out.type = watch_event_type::deleted;
        else if (type == "BOOKMARK")
          out.type = watch_event_type::bookmark;
        else if (type == "ERROR")
          out.type = watch_event_type::error;
        else {
          bad_line =
              api_error(errc::unexpected, 200, "Unexpected", "unknown watch event type " + type, describe(request));
          return false;
        }
        if (out.type == watch_event_type::error) {
          // The server ends a watch it cannot continue with an ERROR event holding a Status.
          int code = int_member(out.object, "code", 500);
          bad_line = error_from_response(code, out.object.dump(), describe(request));
          return false;
        }
        return on_event(std::move(out));
      },
      stop);
  if (options_.on_request) options_.on_request("WATCH", resp.status);
  if (resp.status != 0 && (resp.status < 200 || resp.status >= 300)) {
    throw error_from_response(resp.status, resp.body, describe(request), resp.header("retry-after"));
  }
  if (bad_line) throw *bad_line;
}

}  // namespace datashare::kube
