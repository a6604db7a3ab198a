#include "tests/support/test_owner/owner_service.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/url.h"
#include "sidecar/http/standalone.h"

namespace datashare::testing {

namespace bhttp = boost::beast::http;
using sidecar::http::json_error;
using sidecar::http::responder;
using sidecar::http::response;

namespace {

std::optional<std::uint64_t> parse_uint(const std::optional<std::string>& text) {
  if (!text || text->empty()) return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc{} || end != text->data() + text->size()) return std::nullopt;
  return v;
}

// An injected status: 0 (close) or 100..599.
std::optional<unsigned> parse_status(const std::optional<std::string>& text) {
  auto v = parse_uint(text);
  if (!v || (*v != 0 && (*v < 100 || *v > 599))) return std::nullopt;
  return static_cast<unsigned>(*v);
}

}  // namespace

std::optional<path_template> path_template::parse(std::string_view text, std::string& error) {
  const auto at = text.find("{key}");
  if (text.empty() || text.front() != '/') {
    error = "path must start with \"/\", got \"" + std::string(text) + "\"";
    return std::nullopt;
  }
  if (at == std::string_view::npos || text.find("{key}", at + 1) != std::string_view::npos) {
    error = "path must contain {key} exactly once, got \"" + std::string(text) + "\"";
    return std::nullopt;
  }
  return path_template{std::string(text.substr(0, at)), std::string(text.substr(at + 5))};
}

std::optional<std::string> path_template::match(std::string_view path) const {
  if (path.size() <= prefix.size() + suffix.size() || !path.starts_with(prefix) || !path.ends_with(suffix)) {
    return std::nullopt;
  }
  const auto raw = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
  if (raw.find('/') != std::string_view::npos) return std::nullopt;
  return url::percent_decode(raw);
}

owner_service::owner_service(path_template path, int timer_threads)
    : path_(std::move(path)), work_(timers_.get_executor()) {
  for (int i = 0; i < timer_threads; ++i) threads_.emplace_back([this] { timers_.run(); });
}

owner_service::~owner_service() {
  work_.reset();
  timers_.stop();
  for (auto& t : threads_) t.join();
}

void owner_service::handle(const sidecar::http::request& req, const responder& respond) {
  const std::string_view target(req.target().data(), req.target().size());
  const auto q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  if (path.starts_with("/control/")) {
    handle_control(req, path, query, respond);
    return;
  }
  auto key = path_.match(path);
  if (!key || key->empty()) {
    respond(json_error(404, "no such path: " + std::string(path)));
    return;
  }
  const auto method = req.method();
  if (method != bhttp::verb::get && method != bhttp::verb::put && method != bhttp::verb::delete_) {
    respond(json_error(405, "method not allowed"));
    return;
  }
  std::optional<failure> fail;
  std::chrono::milliseconds delay{0};
  {
    std::lock_guard lock(mu_);
    if (method == bhttp::verb::get) ++gets_;
    if (method == bhttp::verb::put) ++puts_;
    if (method == bhttp::verb::delete_) ++deletes_;
    max_inflight_ = std::max(max_inflight_, ++inflight_);
    if (fail_next_count_ > 0) {
      --fail_next_count_;
      fail = fail_next_;
    } else {
      fail = fail_all_;
    }
    delay = delay_;
  }
  if (delay.count() == 0) {
    finish(req, *key, fail, respond);
    return;
  }
  // The request stays valid: the session reads nothing more until it has answered.
  auto timer = std::make_shared<boost::asio::steady_timer>(timers_, delay);
  timer->async_wait([this, timer, &req, key = std::move(*key), fail, respond](boost::system::error_code) {
    finish(req, key, fail, respond);
  });
}

void owner_service::finish(const sidecar::http::request& req, const std::string& key, std::optional<failure> fail,
                           const responder& respond) {
  response out;
  {
    std::lock_guard lock(mu_);
    --inflight_;
    if (!fail) {
      if (req.method() == bhttp::verb::get) {
        auto it = data_.find(key);
        out = it == data_.end() ? json_error(404, "not found: " + key) : response{.body = it->second};
      } else if (req.method() == bhttp::verb::put) {
        auto body = nlohmann::json::parse(req.body(), nullptr, false);
        if (body.is_discarded() || !body.is_object()) {
          out = json_error(400, "body must be a JSON object");
        } else {
          out.body = body.dump();
          data_[key] = out.body;
        }
      } else {
        out = data_.erase(key) == 0 ? json_error(404, "not found: " + key) : response{.status = 204, .body = ""};
      }
    }
  }
  if (fail && fail->status == 0) {
    respond.close();
  } else if (fail) {
    respond(json_error(fail->status, "injected failure"));
  } else {
    respond(std::move(out));
  }
}

void owner_service::store(const std::string& key, std::string value) {
  std::lock_guard lock(mu_);
  data_[key] = std::move(value);
}

void owner_service::handle_control(const sidecar::http::request& req, std::string_view path, std::string_view query,
                                   const responder& respond) {
  const auto method = req.method();
  std::lock_guard lock(mu_);
  if (path == "/control/stats" && method == bhttp::verb::get) {
    respond(response{.body = nlohmann::json{{"gets", gets_},
                                            {"puts", puts_},
                                            {"deletes", deletes_},
                                            {"inflight", inflight_},
                                            {"max_inflight", max_inflight_}}
                                 .dump()});
    return;
  }
  if (path.starts_with("/control/data/") && method == bhttp::verb::put) {
    const auto raw = path.substr(14);
    auto key = url::percent_decode(raw);
    if (!key || key->empty() || raw.find('/') != std::string_view::npos) {
      respond(json_error(400, "malformed key"));
      return;
    }
    data_[*key] = req.body();  // stored as it is: tests seed malformed values on purpose
    respond(response{.status = 204, .body = ""});
    return;
  }
  if (method != bhttp::verb::post) {
    respond(json_error(404, "no such control endpoint: " + std::string(path)));
    return;
  }
  if (path == "/control/delay") {
    auto ms = parse_uint(url::query_param(query, "ms"));
    if (!ms) {
      respond(json_error(400, "delay needs ms=<non-negative integer>"));
      return;
    }
    delay_ = std::chrono::milliseconds(*ms);
  } else if (path == "/control/fail") {
    auto status = parse_status(url::query_param(query, "status"));
    if (!status) {
      respond(json_error(400, "fail needs status=0 (close) or 100..599"));
      return;
    }
    fail_all_ = failure{*status};
  } else if (path == "/control/fail-next") {
    auto count = parse_uint(url::query_param(query, "count"));
    auto status = parse_status(url::query_param(query, "status"));
    if (!count || !status) {
      respond(json_error(400, "fail-next needs count=<n>&status=0 (close) or 100..599"));
      return;
    }
    fail_next_count_ = *count;
    fail_next_ = failure{*status};
  } else if (path == "/control/recover") {
    fail_all_.reset();
    fail_next_count_ = 0;
  } else if (path == "/control/reset") {
    data_.clear();
    delay_ = std::chrono::milliseconds{0};
    fail_all_.reset();
    fail_next_count_ = 0;
    gets_ = puts_ = deletes_ = 0;
    max_inflight_ = inflight_;
  } else {
    respond(json_error(404, "no such control endpoint: " + std::string(path)));
    return;
  }
  respond(response{.status = 204, .body = ""});
}

}  // namespace datashare::testing
