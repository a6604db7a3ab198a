#include "sidecar/http/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <charconv>

namespace datashare::sidecar::http {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

std::optional<origin> parse_origin(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  url.remove_prefix(kScheme.size());
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  if (url.empty() || url.find('/') != std::string_view::npos) return std::nullopt;
  origin o;
  auto colon = url.rfind(':');
  if (colon == std::string_view::npos || url.find(']', colon) != std::string_view::npos) {
    o.host = std::string(url);
    o.port = "80";
  } else {
    o.host = std::string(url.substr(0, colon));
    o.port = std::string(url.substr(colon + 1));
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(o.port.data(), o.port.data() + o.port.size(), port);
    if (ec != std::errc() || ptr != o.port.data() + o.port.size() || port == 0 || port > 65535) return std::nullopt;
  }
  if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']') o.host = o.host.substr(1, o.host.size() - 2);
  if (o.host.empty()) return std::nullopt;
  return o;
}

struct client::connection {
  net::io_context ioc{1};
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  bool open = false;
  bool reused = false;
};

client::client(origin o, std::size_t max_idle) : origin_(std::move(o)), max_idle_(max_idle) {}

client::~client() = default;

std::unique_ptr<client::connection> client::take() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      c->reused = true;
      return c;
    }
  }
  return std::make_unique<connection>();
}

void client::give_back(std::unique_ptr<connection> c) {
  std::lock_guard lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
}

beast::error_code client::attempt(connection& c, bhttp::verb method, std::string_view target, std::string_view body,
                                  std::chrono::steady_clock::time_point deadline, client_reply& out) {
  beast::error_code ec;
  c.ioc.restart();
  if (!c.open) {
    // Resolving is synchronous: names are cluster Services or literal addresses, answered at once.
    tcp::resolver resolver(c.ioc);
    auto endpoints = resolver.resolve(origin_.host, origin_.port, ec);
    if (ec) return ec;
    c.stream.expires_at(deadline);
    c.stream.async_connect(endpoints, [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
    c.ioc.run();
    if (ec) return ec;
    c.stream.socket().set_option(tcp::no_delay(true), ec);
    ec = {};
    c.open = true;
    c.buffer.clear();
  }
  bhttp::request<bhttp::string_body> req{method, std::string(target), 11};
  req.set(bhttp::field::host, origin_.host);
  req.keep_alive(true);
  if (!body.empty()) {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = std::string(body);
  }
  req.prepare_payload();
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 << 20);
  c.ioc.restart();
  c.stream.expires_at(deadline);
  bhttp::async_write(c.stream, req, [&](beast::error_code e, std::size_t) {
    ec = e;
    if (e) return;
    bhttp::async_read(c.stream, c.buffer, parser, [&ec](beast::error_code e2, std::size_t) { ec = e2; });
  });
  c.ioc.run();
  if (ec) return ec;
  auto& res = parser.get();
  out.status = res.result_int();
  out.body = std::move(res.body());
  if (!res.keep_alive()) {
    beast::error_code ignored;
    c.stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    c.stream.close();
    c.open = false;
  }
  return {};
}

std::error_code client::call(bhttp::verb method, std::string_view target, std::string_view body,
                             std::chrono::steady_clock::time_point deadline, client_reply& out) {
  auto c = take();
  beast::error_code ec = attempt(*c, method, target, body, deadline, out);
  // A pooled connection the peer closed while idle fails at once: try once on a fresh one.
  // Every request sent here is idempotent (transaction ids, PUT/DELETE of a whole entity).
  if (ec && c->reused && std::chrono::steady_clock::now() < deadline &&
      (ec == net::error::eof || ec == net::error::connection_reset || ec == net::error::broken_pipe ||
       ec == bhttp::error::end_of_stream)) {
    c = std::make_unique<connection>();
    ec = attempt(*c, method, target, body, deadline, out);
  }
  if (ec) {
    // The connection is dropped: its state is unknown.
    if (ec == beast::error::timeout) return std::make_error_code(std::errc::timed_out);
    if (ec == net::error::connection_refused) return std::make_error_code(std::errc::connection_refused);
    return static_cast<std::error_code>(ec);
  }
  if (c->open) give_back(std::move(c));
  return {};
}

}  // namespace datashare::sidecar::http
