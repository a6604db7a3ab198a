#include "sidecar/participant/http_links.h"

#include "common/url.h"
#include "sidecar/http/server.h"

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

namespace {

// What each call's answer means (shared by the blocking and the async forms).
std::error_code read_get(const http::origin& o, const std::string& p, http::client_reply& r, bool& found,
                         std::string& value, std::string& error) {
  if (r.status == 404) {
    found = false;
    value.clear();
    return {};
  }
  if (r.status != 200) {
    error = describe(o, p, "GET answered " + std::to_string(r.status) + " " + shorten(r.body));
    return std::make_error_code(std::errc::io_error);
  }
  found = true;
  value = std::move(r.body);
  return {};
}

std::error_code read_put(const http::origin& o, const std::string& p, const http::client_reply& r, std::string& error) {
  if (r.status < 200 || r.status >= 300) {
    error = describe(o, p, "PUT answered " + std::to_string(r.status) + " " + shorten(r.body));
    return std::make_error_code(std::errc::io_error);
  }
  return {};
}

std::error_code read_del(const http::origin& o, const std::string& p, const http::client_reply& r, std::string& error) {
  if ((r.status < 200 || r.status >= 300) && r.status != 404) {
    error = describe(o, p, "DELETE answered " + std::to_string(r.status) + " " + shorten(r.body));
    return std::make_error_code(std::errc::io_error);
  }
  return {};
}

}  // namespace

http::async_client* http_owner::pick() {
  auto* here = http::server::current_context();
  std::lock_guard lock(async_mu_);
  if (here != nullptr) {
    for (auto& [ctx, c] : async_) {
      if (ctx == here) return c.get();
    }
    async_.emplace_back(here, std::make_unique<http::async_client>(*here, client_.where()));
    return async_.back().second.get();
  }
  if (async_.empty()) return nullptr;
  return async_[next_.fetch_add(1, std::memory_order_relaxed) % async_.size()].second.get();
}

void http_owner::get_async(const std::string& key, callback done) {
  auto* c = pick();
  if (c == nullptr) {
    owner_api::get_async(key, std::move(done));
    return;
  }
  std::string p = path(key);
  c->call(bhttp::verb::get, p, "", std::chrono::steady_clock::now() + timeout_,
          [o = &c->where(), p, done = std::move(done)](std::error_code ec, http::client_reply r) {
            bool found = false;
            std::string value, error;
            if (ec) {
              error = describe(*o, p, ec.message());
            } else {
              ec = read_get(*o, p, r, found, value, error);
            }
            done(ec, found, std::move(value), std::move(error));
          });
}

void http_owner::put_async(const std::string& key, const std::string& value, callback done) {
  auto* c = pick();
  if (c == nullptr) {
    owner_api::put_async(key, value, std::move(done));
    return;
  }
  change_async(*c, bhttp::verb::put, key, value, std::move(done));
}

void http_owner::del_async(const std::string& key, callback done) {
  auto* c = pick();
  if (c == nullptr) {
    owner_api::del_async(key, std::move(done));
    return;
  }
  change_async(*c, bhttp::verb::delete_, key, "", std::move(done));
}

void http_owner::change_async(http::async_client& c, bhttp::verb verb, const std::string& key, const std::string& body,
                              callback done) {
  std::string p = path(key);
  c.call(verb, p, body, std::chrono::steady_clock::now() + timeout_,
         [o = &c.where(), p, verb, done = std::move(done)](std::error_code ec, const http::client_reply& r) {
           std::string error;
           if (ec) {
             error = describe(*o, p, ec.message());
           } else {
             ec = verb == bhttp::verb::delete_ ? read_del(*o, p, r, error) : read_put(*o, p, r, error);
           }
           done(ec, false, "", std::move(error));
         });
}

std::error_code http_owner::get(const std::string& key, bool& found, std::string& value, std::string& error) {
  http::client_reply r;
  std::string p = path(key);
  if (auto ec = client_.call(bhttp::verb::get, p, "", std::chrono::steady_clock::now() + timeout_, r)) {
    error = describe(client_.where(), p, ec.message());
    return ec;
  }
  return read_get(client_.where(), p, r, found, value, error);
}

std::error_code http_owner::put(const std::string& key, const std::string& value, std::string& error) {
  http::client_reply r;
  std::string p = path(key);
  if (auto ec = client_.call(bhttp::verb::put, p, value, std::chrono::steady_clock::now() + timeout_, r)) {
    error = describe(client_.where(), p, ec.message());
    return ec;
  }
  return read_put(client_.where(), p, r, error);
}

std::error_code http_owner::del(const std::string& key, std::string& error) {
  http::client_reply r;
  std::string p = path(key);
  if (auto ec = client_.call(bhttp::verb::delete_, p, "", std::chrono::steady_clock::now() + timeout_, r)) {
    error = describe(client_.where(), p, ec.message());
    return ec;
  }
  return read_del(client_.where(), p, r, error);
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
