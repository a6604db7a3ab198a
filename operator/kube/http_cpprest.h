#pragma once
// http_transport on cpprestsdk: TLS with the rest_config's trust and client certificate,
// pooled keep-alive connections, bearer tokens re-read from their file on every request.

#include <chrono>
#include <memory>

#include "operator/kube/config.h"
#include "operator/kube/http.h"

namespace web::http::client {
class http_client;
}

namespace datashare::kube {

// Thread-safe. Owns two cpprestsdk clients: one for ordinary requests (timeout
// `request_timeout`) and one for watches, whose idle timeout must outlast the server-side watch
// timeout (at most 10 minutes) because the API server sends nothing while nothing changes.
class cpprest_transport final : public http_transport {
 public:
  explicit cpprest_transport(rest_config config, std::chrono::seconds request_timeout = std::chrono::seconds(30),
                             std::chrono::seconds stream_idle_timeout = std::chrono::seconds(660));
  ~cpprest_transport() override;

  http_response send(const http_request& request) override;
  http_response stream_lines(const http_request& request, const std::function<bool(std::string_view)>& on_line,
                             std::stop_token stop) override;
  std::string host() const override { return config_.server; }

 private:
  rest_config config_;
  std::unique_ptr<web::http::client::http_client> client_;
  std::unique_ptr<web::http::client::http_client> stream_client_;
};

}  // namespace datashare::kube
