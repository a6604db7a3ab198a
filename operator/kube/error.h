#pragma once
// Errors of the Kubernetes client, as codes callers branch on (like apimachinery's
// IsNotFound/IsConflict/...), carrying the server's Status details.

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace datashare::kube {

enum class errc {
  not_found = 1,
  already_exists,
  conflict,            // optimistic-concurrency failure or a server-side-apply field conflict
  gone,                // 410: the resourceVersion is too old (watch expired, compacted)
  forbidden,           // 403
  unauthorized,        // 401
  invalid,             // 422, with field causes
  bad_request,         // 400
  method_not_allowed,  // 405
  too_many_requests,   // 429, with Retry-After
  timeout,             // 504 or a server-side timeout
  server_error,        // other 5xx
  transport,           // no HTTP answer: connection refused, TLS failure, client timeout
  unexpected,          // an answer this client cannot read
};

const std::error_category& kube_category();
std::error_code make_error_code(errc e);

// One entry of Status.details.causes: which field was wrong and why.
struct status_cause {
  std::string reason;  // e.g. FieldValueInvalid
  std::string field;   // e.g. spec.replicas
  std::string message;
};

// A failed API request. what() is "<verb> <path>: <code> <reason>: <message>".
class api_error : public std::runtime_error {
 public:
  api_error(errc code, int http_status, std::string reason, std::string message, const std::string& request,
            std::vector<status_cause> causes = {}, std::optional<std::chrono::milliseconds> retry_after = {});

  errc code() const { return code_; }
  int http_status() const { return http_status_; }  // 0 for transport errors
  const std::string& reason() const { return reason_; }
  const std::string& message() const { return message_; }
  const std::vector<status_cause>& causes() const { return causes_; }
  std::optional<std::chrono::milliseconds> retry_after() const { return retry_after_; }

  // Worth sending again unchanged: throttling, timeouts, server and transport errors.
  bool retryable() const;

 private:
  errc code_;
  int http_status_;
  std::string reason_;
  std::string message_;
  std::vector<status_cause> causes_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

// Maps an HTTP status and the Status body (possibly empty or not JSON) to an api_error.
api_error error_from_response(int http_status, const std::string& body, const std::string& request,
                              const std::optional<std::string>& retry_after_header = {});

inline bool is_not_found(const api_error& e) {
  return e.code() == errc::not_found;
}
inline bool is_conflict(const api_error& e) {
  return e.code() == errc::conflict;
}
inline bool is_already_exists(const api_error& e) {
  return e.code() == errc::already_exists;
}
inline bool is_gone(const api_error& e) {
  return e.code() == errc::gone;
}
// A create refused because its namespace is being deleted (403 with the NamespaceTerminating
// cause). Nothing is wrong with the request: the namespace and what is in it are going away.
bool is_namespace_terminating(const api_error& e);

}  // namespace datashare::kube

template <>
struct std::is_error_code_enum<datashare::kube::errc> : std::true_type {};
