#include "operator/kube/error.h"

#include <nlohmann/json.hpp>

#include "operator/kube/json_access.h"

namespace datashare::kube {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "kube"; }
  std::string message(int v) const override {
    switch (static_cast<errc>(v)) {
      case errc::not_found:
        return "NotFound";
      case errc::already_exists:
        return "AlreadyExists";
      case errc::conflict:
        return "Conflict";
      case errc::gone:
        return "Gone";
      case errc::forbidden:
        return "Forbidden";
      case errc::unauthorized:
        return "Unauthorized";
      case errc::invalid:
        return "Invalid";
      case errc::bad_request:
        return "BadRequest";
      case errc::method_not_allowed:
        return "MethodNotAllowed";
      case errc::too_many_requests:
        return "TooManyRequests";
      case errc::timeout:
        return "Timeout";
      case errc::server_error:
        return "InternalError";
      case errc::transport:
        return "TransportError";
      case errc::unexpected:
        return "Unexpected";
    }
    return "unknown";
  }
};

errc code_for(int status, const std::string& reason) {
  // The reason is authoritative when present (409 is both AlreadyExists and Conflict).
  if (reason == "NotFound") return errc::not_found;
  if (reason == "AlreadyExists") return errc::already_exists;
  if (reason == "Conflict") return errc::conflict;
  if (reason == "Gone" || reason == "Expired") return errc::gone;
  if (reason == "Forbidden") return errc::forbidden;
  if (reason == "Unauthorized") return errc::unauthorized;
  if (reason == "Invalid") return errc::invalid;
  if (reason == "TooManyRequests") return errc::too_many_requests;
  if (reason == "Timeout" || reason == "ServerTimeout") return errc::timeout;
  if (reason == "MethodNotAllowed") return errc::method_not_allowed;
  switch (status) {
    case 400:
      return errc::bad_request;
    case 401:
      return errc::unauthorized;
    case 403:
      return errc::forbidden;
    case 404:
      return errc::not_found;
    case 405:
      return errc::method_not_allowed;
    case 409:
      return errc::conflict;
    case 410:
      return errc::gone;
    case 422:
      return errc::invalid;
    case 429:
      return errc::too_many_requests;
    case 504:
      return errc::timeout;
    default:
      break;
  }
  if (status >= 500) return errc::server_error;
  return errc::unexpected;
}

std::optional<std::chrono::milliseconds> parse_retry_after(const std::optional<std::string>& header) {
  if (!header || header->empty()) return std::nullopt;
  try {
    size_t used = 0;
    long seconds = std::stol(*header, &used);
    if (used != header->size() || seconds < 0) return std::nullopt;
    return std::chrono::milliseconds(seconds * 1000);
  } catch (const std::exception&) {
    return std::nullopt;  // an HTTP date: the API server never sends one
  }
}

}  // namespace

const std::error_category& kube_category() {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) {
  return {static_cast<int>(e), kube_category()};
}

api_error::api_error(errc code, int http_status, std::string reason, std::string message, const std::string& request,
                     std::vector<status_cause> causes, std::optional<std::chrono::milliseconds> retry_after)
    : std::runtime_error(request + ": " + (http_status ? std::to_string(http_status) + " " : "") + reason + ": " +
                         message),
      code_(code),
      http_status_(http_status),
      reason_(std::move(reason)),
      message_(std::move(message)),
      causes_(std::move(causes)),
      retry_after_(retry_after) {}

bool is_namespace_terminating(const api_error& e) {
  if (e.code() != errc::forbidden) return false;
  for (const auto& c : e.causes()) {
    if (c.reason == "NamespaceTerminating") return true;
  }
  return false;
}

bool api_error::retryable() const {
  switch (code_) {
    case errc::too_many_requests:
    case errc::timeout:
    case errc::server_error:
    case errc::transport:
      return true;
    default:
      return false;
  }
}

api_error error_from_response(int http_status, const std::string& body, const std::string& request,
                              const std::optional<std::string>& retry_after_header) {
  std::string reason;
  std::string message;
  std::vector<status_cause> causes;
  std::optional<std::chrono::milliseconds> retry_after = parse_retry_after(retry_after_header);
  auto status = nested_deeper_than(body, kMaxJsonDepth)
                    ? nlohmann::json()
                    : nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (string_member(status, "kind") == "Status") {
    reason = string_member(status, "reason");
    message = string_member(status, "message");
    if (auto d = status.find("details"); d != status.end() && d->is_object()) {
      if (auto c = d->find("causes"); c != d->end() && c->is_array()) {
        for (const auto& cause : *c) {
          if (!cause.is_object()) continue;
          causes.push_back(
              {string_member(cause, "reason"), string_member(cause, "field"), string_member(cause, "message")});
        }
      }
      if (!retry_after) {
        if (auto r = d->find("retryAfterSeconds"); r != d->end() && r->is_number_integer()) {
          retry_after = std::chrono::milliseconds(r->get<int64_t>() * 1000);
        }
      }
    }
  } else {
    message = body.substr(0, 512);
  }
  errc code = code_for(http_status, reason);
  if (reason.empty()) reason = kube_category().message(static_cast<int>(code));
  return api_error(code, http_status, std::move(reason), std::move(message), request, std::move(causes), retry_after);
}

}  // namespace datashare::kube
