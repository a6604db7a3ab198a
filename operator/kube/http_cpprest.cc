#include "operator/kube/http_cpprest.h"

#include <cpprest/http_client.h>
#include <cpprest/rawptrstream.h>

#include <algorithm>
#include <cctype>

#include "operator/kube/error.h"
#include "operator/kube/tls.h"

namespace datashare::kube {
namespace {

web::http::http_request to_cpprest(const http_request& in, const rest_config& cfg) {
  web::http::http_request req(in.method);
  req.set_request_uri(in.target);
  req.headers().add("Accept", "application/json");
  req.headers().add("User-Agent", "datashare-operator");
  if (auto auth = authorization_header(cfg); !auth.empty()) req.headers().add("Authorization", auth);
  for (const auto& [k, v] : in.headers) req.headers().add(k, v);
  if (!in.body.empty() || in.method == "POST" || in.method == "PUT" || in.method == "PATCH") {
    req.set_body(in.body, in.content_type.empty() ? std::string("application/json") : in.content_type);
  }
  return req;
}

std::map<std::string, std::string> lower_headers(const web::http::http_headers& h) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : h) {
    std::string name = k;
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    out[name] = v;
  }
  return out;
}

api_error transport_error(const http_request& r, const std::string& what) {
  return api_error(errc::transport, 0, "TransportError", what, r.method + " " + r.target);
}

}  // namespace

cpprest_transport::cpprest_transport(rest_config config, std::chrono::seconds request_timeout,
                                     std::chrono::seconds stream_idle_timeout)
    : config_(std::move(config)),
      client_(std::make_unique<web::http::client::http_client>(config_.server,
                                                               http_client_config_for(config_, request_timeout))),
      stream_client_(std::make_unique<web::http::client::http_client>(
          config_.server, http_client_config_for(config_, stream_idle_timeout))) {}

cpprest_transport::~cpprest_transport() = default;

http_response cpprest_transport::send(const http_request& request) {
  try {
    auto resp = client_->request(to_cpprest(request, config_)).get();
    http_response out;
    out.status = resp.status_code();
    out.headers = lower_headers(resp.headers());
    out.body = resp.extract_utf8string(/*ignore_content_type=*/true).get();
    return out;
  } catch (const web::http::http_exception& e) {
    throw transport_error(request, e.what());
  } catch (const std::system_error& e) {
    throw transport_error(request, e.what());
  }
}

http_response cpprest_transport::stream_lines(const http_request& request,
                                              const std::function<bool(std::string_view)>& on_line,
                                              std::stop_token stop) {
  pplx::cancellation_token_source cancel;
  std::stop_callback on_stop(stop, [&cancel] { cancel.cancel(); });
  http_response out;
  try {
    auto resp = stream_client_->request(to_cpprest(request, config_), cancel.get_token()).get();
    out.status = resp.status_code();
    out.headers = lower_headers(resp.headers());
    if (out.status < 200 || out.status >= 300) {
      out.body = resp.extract_utf8string(true).get();
      return out;
    }
    // Read whatever has arrived (at least one byte, then all that is buffered) and cut it into
    // lines ourselves: cpprestsdk's read_line goes byte by byte through tasks, far too slow for
    // a busy watch.
    auto buf = resp.body().streambuf();
    std::string pending;
    std::vector<unsigned char> chunk(64 * 1024);
    while (!stop.stop_requested()) {
      size_t n = buf.getn(chunk.data(), 1).get();
      if (n == 0) break;  // end of the response
      size_t avail = std::min(buf.in_avail(), chunk.size() - 1);
      if (avail > 0) n += buf.getn(chunk.data() + 1, avail).get();
      pending.append(reinterpret_cast<const char*>(chunk.data()), n);
      size_t start = 0;
      for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
        if (nl > start && !on_line(std::string_view(pending).substr(start, nl - start))) return out;
      }
      pending.erase(0, start);
    }
    if (!pending.empty() && !stop.stop_requested()) on_line(pending);
    return out;
  } catch (const pplx::task_canceled&) {
    return out;  // stopped by the caller
  } catch (const std::exception& e) {
    if (stop.stop_requested()) return out;
    throw transport_error(request, e.what());
  }
}

}  // namespace datashare::kube
