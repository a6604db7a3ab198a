#include "sidecar/participant/http_links.h"

#include "common/url.h"

namespace datashare::sidecar::participant {
namespace bhttp = boost::beast::http;

namespace {

std::string describe(const http::origin& o, const std::string& path, std::string_view what) {
  return "http://" + o.host + ":" + o.port + path + ": " + std::string(what);
}

std::string shorten(const std::string& body) {
  return body.size() > 200 ? body.substr(0, 200) + "..." : body;
}

}  // namespace

http_owner::http_owner(http::origin where, std::string write_path, std::chrono::milliseconds timeout)
    : client_(std::move(where)), write_path_(std::move(write_path)), timeout_(timeout) {}

std::string http_owner::path(const std::string& key) const {
  std::string p = write_path_;
  auto pos = p.find("{key}");
  p.replace(pos, 5, url::percent_encode_segment(key));
  return p;
}

std::error_code http_owner::get(const std::string& key, bool& found, std::string& value, std::string& error) {
  http::client_reply r;
  std::string p = path(key);
  if (auto ec = client_.call(bhttp::verb::get, p, "", std::chrono::steady_clock::now() + timeout_, r)) {
    error = describe(client_.where(), p, ec.message());
    return ec;
  }
  if (r.status == 404) {
    found = false;
    value.clear();
    return {};
  }
  if (r.status != 200) {
    error = describe(client_.where(), p, "GET answered " + std::to_string(r.status) + " " + shorten(r.body));
    return std::make_error_code(std::errc::io_error);
  }
  found = true;
  value = std::move(r.body);
  return {};
}

std::error_code http_owner::put(const std::string& key, const std::string& value, std::string& error) {
  http::client_reply r;
  std::string p = path(key);
  if (auto ec = client_.call(bhttp::verb::put, p, value, std::chrono::steady_clock::now() + timeout_, r)) {
    error = describe(client_.where(), p, ec.message());
    return ec;
  }
  if (r.status < 200 || r.status >= 300) {
    error = describe(client_.where(), p, "PUT answered " + std::to_string(r.status) + " " + shorten(r.body));
    return std::make_error_code(std::errc::io_error);
  }
  return {};
}

std::error_code http_owner::del(const std::string& key, std::string& error) {
  http::client_reply r;
  std::string p = path(key);
  if (auto ec = client_.call(bhttp::verb::delete_, p, "", std::chrono::steady_clock::now() + timeout_, r)) {
    error = describe(client_.where(), p, ec.message());
    return ec;
  }
  if ((r.status < 200 || r.status >= 300) && r.status != 404) {
    error = describe(client_.where(), p, "DELETE answered " + std::to_string(r.status) + " " + shorten(r.body));
    return std::make_error_code(std::errc::io_error);
  }
  return {};
}

http_outcomes::http_outcomes(std::string coordinator_url, std::chrono::milliseconds timeout)
    : timeout_(timeout), coordinator_url_(std::move(coordinator_url)) {}

std::string http_outcomes::ask(const std::string& url, const std::string& target, const char* member) {
  http::client* c = nullptr;
  {
    std::lock_guard lock(mu_);
    auto& slot = clients_[url];
    if (!slot) {
      auto o = http::parse_origin(url);
      if (!o) return "";
      slot = std::make_unique<http::client>(*o, 4);
    }
    c = slot.get();
  }
  http::client_reply r;
  if (c->call(bhttp::verb::get, target, "", std::chrono::steady_clock::now() + timeout_, r) || r.status != 200)
    return "";
  return read_member(r.body, member);
}

std::string http_outcomes::ask_coordinator(const std::string& tx) {
  return ask(coordinator_url_, "/v1/tx/" + tx, "outcome");
}

std::string http_outcomes::ask_peer(const std::string& url, const std::string& product, const std::string& tx,
                                    std::uint64_t version) {
  return ask(
      url, "/v1/tx/" + tx + "?product=" + url::percent_encode_segment(product) + "&version=" + std::to_string(version),
      "state");
}

}  // namespace datashare::sidecar::participant
