#include "gateway/api.h"

#include <nlohmann/json.hpp>

#include "common/url.h"
#include "sidecar/participant/protocol.h"

namespace datashare::gateway {
namespace bhttp = boost::beast::http;
using sidecar::http::response;

namespace {

response error(unsigned status, const std::string& message) {
  return {status,
          nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
          "application/json",
          {}};
}

}  // namespace

void api::handle_admin(const sidecar::http::request& req, const sidecar::http::responder& respond) {
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/healthz") {
    if (auto ec = coordinator_.log_failure()) {
      // Restart me: only recovery can decide a transaction whose commit record failed.
      respond({503, nlohmann::json{{"status", "decision log failed: " + ec.message()}}.dump(), "application/json", {}});
    } else {
      respond({200, R"({"status":"ok"})", "application/json", {}});
    }
  } else if (path == "/readyz") {
    bool ready = coordinator_.ready();
    nlohmann::json j{{"ready", ready}, {"inDoubt", coordinator_.in_doubt()}};
    respond({ready ? 200u : 503u, j.dump(), "application/json", {}});
  } else if (path == "/metrics") {
    respond({200, metrics_.serialize(), "text/plain; version=0.0.4", {}});
  } else {
    respond(error(404, "no such path: try /healthz, /readyz, /metrics"));
  }
}

void api::handle_data(const sidecar::http::request& req, const sidecar::http::responder& respond) {
  std::string_view target(req.target().data(), req.target().size());
  std::string_view path = target.substr(0, target.find('?'));
  if (auto tx = sidecar::participant::parse_tx_path(path); tx && tx->op.empty()) {
    if (req.method() != bhttp::verb::get) {
      respond(error(405, "GET /v1/tx/<id>"));
    } else if (!coordinator_.ready()) {
      respond(error(503, "recovering the decision log"));
    } else {
      respond({200, nlohmann::json{{"outcome", coordinator_.outcome(tx->id)}}.dump(), "application/json", {}});
    }
    return;
  }
  constexpr std::string_view kPrefix = "/v1/data/";
  if (path.substr(0, kPrefix.size()) != kPrefix) {
    handle_admin(req, respond);
    return;
  }
  std::string_view rest = path.substr(kPrefix.size());
  auto slash = rest.find('/');
  std::string_view product = rest.substr(0, slash);
  if (product != config_.product.name) {
    metrics_.invalid.Increment();
    respond(error(400, "unknown product \"" + std::string(product) + "\": this gateway coordinates \"" +
                           config_.product.name + "\""));
    return;
  }
  auto key =
      slash == std::string_view::npos ? std::optional<std::string>() : url::percent_decode(rest.substr(slash + 1));
  if (!key || key->empty()) {
    metrics_.invalid.Increment();
    respond(error(400, "missing or malformed key: /v1/data/<product>/<key>"));
    return;
  }
  if (req.method() != bhttp::verb::put && req.method() != bhttp::verb::delete_) {
    auto r = error(405, "PUT or DELETE /v1/data/<product>/<key> (reads go to the sidecars)");
    r.headers.emplace_back("Allow", "PUT, DELETE");
    respond(std::move(r));
    return;
  }
  if (!coordinator_.ready()) {
    auto r = error(503, "recovering the decision log");
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
    return;
  }
  std::optional<std::string> body;
  if (req.method() == bhttp::verb::put) body = req.body();
  coordinator_.update_async(*key, body, [respond](update_result r) {
    response out{r.status, std::move(r.body), "application/json", {}};
    if (r.version != 0) out.headers.emplace_back("Datashare-Version", std::to_string(r.version));
    if (r.status == 409) out.headers.emplace_back("Retry-After", "0");
    respond(std::move(out));
  });
}

}  // namespace datashare::gateway
