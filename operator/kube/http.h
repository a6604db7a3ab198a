#pragma once
// The HTTP seam of the Kubernetes client. The real transport is cpprestsdk over TLS
// (http_cpprest.h); unit tests plug an in-memory fake here and so test the client, the watch
// state machine and everything above them without an API server.

#include <functional>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace datashare::kube {

struct http_request {
  std::string method;  // GET, POST, PUT, PATCH, DELETE
  std::string target;  // path and query: "/api/v1/namespaces/a/configmaps?limit=500"
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // beyond auth, accept and content type
};

struct http_response {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased

  std::optional<std::string> header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    if (it == headers.end()) return std::nullopt;
    return it->second;
  }
};

// Sends requests to one API server. Implementations are thread-safe: the client, watches and
// leader election share one transport from many threads.
class http_transport {
 public:
  virtual ~http_transport() = default;

  // The whole response. Throws api_error with errc::transport when no HTTP answer arrives.
  virtual http_response send(const http_request& request) = 0;

  // A streaming response (watch): calls `on_line` with each line of a 2xx body, as it arrives,
  // until the server ends the response, `stop` is requested, or `on_line` returns false. Returns
  // the status and, for a non-2xx answer, its body. Throws api_error(errc::transport) when the
  // connection fails before or during the stream (not when it was stopped).
  virtual http_response stream_lines(const http_request& request,
                                     const std::function<bool(std::string_view line)>& on_line,
                                     std::stop_token stop) = 0;

  // "https://host:port", for messages and metrics.
  virtual std::string host() const = 0;
};

}  // namespace datashare::kube
