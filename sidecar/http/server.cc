#include "sidecar/http/server.h"

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <iostream>
#include <optional>

namespace datashare::sidecar::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket&& socket, handler& h, const limits& l) : stream_(std::move(socket)), handler_(h), limits_(l) {}

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

  void answer(response r) {
    // Inline when called from the handler on this strand; posted when from another thread.
    net::dispatch(stream_.get_executor(),
                  [self = shared_from_this(), r = std::move(r)]() mutable { self->write(std::move(r), false); });
  }

  void abort() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

 private:
  void read() {
    head_ = false;
    parser_.emplace();
    parser_->header_limit(limits_.header_bytes);
    parser_->body_limit(limits_.body_bytes);
    stream_.expires_after(limits_.idle_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
        ec == beast::error::timeout || ec == net::error::operation_aborted) {
      close();
      return;
    }
    if (ec) {
      // Anything else is a request that does not parse (bad method, header too large, bad chunk,
      // body over the limit...): say so and close, the stream cannot be trusted any more.
      response r;
      r.status = ec == bhttp::error::body_limit ? 413 : (ec == bhttp::error::header_limit ? 431 : 400);
      r.body = R"({"error":"malformed HTTP request: )" + ec.message() + "\"}";
      write(std::move(r), true);
      return;
    }
    keep_alive_ = parser_->get().keep_alive();
    head_ = parser_->get().method() == bhttp::verb::head;
    stream_.expires_never();
    handler_(parser_->get(), responder(shared_from_this()));
  }

  // One buffer, one send: the status line, the headers and the body (none for HEAD), kept between
  // requests so a keep-alive connection allocates it once.
  void write(response r, bool close_after) {
    close_ = close_after || !keep_alive_;
    out_.clear();
    out_ += "HTTP/1.1 ";
    out_ += std::to_string(r.status);
    out_ += ' ';
    auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(r.status));
    out_.append(reason.data(), reason.size());
    out_ += "\r\nContent-Type: ";
    append_value(r.content_type);
    for (const auto& [name, value] : r.headers) {
      if (!token(name)) continue;  // the handlers' own names; never a malformed line
      out_ += "\r\n";
      out_ += name;
      out_ += ": ";
      append_value(value);
    }
    out_ += "\r\nContent-Length: ";
    out_ += std::to_string(r.body.size());
    if (close_) out_ += "\r\nConnection: close";
    out_ += "\r\n\r\n";
    if (!head_) out_ += r.body;
    stream_.expires_after(limits_.idle_timeout);
    net::async_write(stream_, net::buffer(out_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec || self->close_) {
        self->close();
        return;
      }
      self->read();
    });
  }

  static bool token(std::string_view name) {
    if (name.empty()) return false;
    for (char c : name) {
      if (c <= ' ' || c >= 127 || c == ':') return false;
    }
    return true;
  }

  // A header value with any CR or LF dropped: no handler can split the response.
  void append_value(std::string_view v) {
    if (v.find_first_of("\r\n") == std::string_view::npos) {
      out_.append(v.data(), v.size());
      return;
    }
    for (char c : v) {
      if (c != '\r' && c != '\n') out_.push_back(c);
    }
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  handler& handler_;
  const limits& limits_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string out_;
  bool keep_alive_ = true;
  bool head_ = false;
  bool close_ = false;
};

void responder::operator()(response r) const {
  if (sink_) {
    sink_(std::move(r));
    return;
  }
  s_->answer(std::move(r));
}

void responder::close() const {
  if (s_) s_->abort();
}

class server::listener : public std::enable_shared_from_this<listener> {
 public:
  listener(server& owner, handler h, const limits& l)
      : owner_(owner), acceptor_(net::make_strand(owner.context())), handler_(std::move(h)), limits_(l) {}

  std::error_code bind(const tcp::endpoint& ep) {
    beast::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    return ec;
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  void accept() {
    acceptor_.async_accept(owner_.next_context(), [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (ec == net::error::operation_aborted) return;
      if (!ec) {
        beast::error_code ignored;
        s.set_option(tcp::no_delay(true), ignored);
        std::make_shared<session>(std::move(s), self->handler_, self->limits_)->start();
      }
      self->accept();
    });
  }
  void close() {
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
    });
  }

 private:
  server& owner_;
  tcp::acceptor acceptor_;
  handler handler_;
  const limits& limits_;
};

server::server(int threads, limits l) : limits_(l) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    contexts_.push_back(std::make_unique<net::io_context>(1));
    guards_.push_back(net::make_work_guard(*contexts_.back()));
  }
}

net::io_context& server::next_context() {
  // Called from the listeners' accept handlers; several listeners may accept at once.
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

server::~server() {
  stop();
}

std::error_code server::listen(const std::string& address, std::uint16_t port, handler h, std::uint16_t& bound_port) {
  beast::error_code ec;
  auto addr = net::ip::make_address(address, ec);
  if (ec) return ec;
  auto l = std::make_shared<listener>(*this, std::move(h), limits_);
  if (auto e = l->bind(tcp::endpoint(addr, port))) return e;
  bound_port = l->port();
  listeners_.push_back(std::move(l));
  return {};
}

void server::start() {
  for (auto& l : listeners_) l->accept();
  for (auto& c : contexts_) workers_.emplace_back([&c] { c->run(); });
}

void server::stop() {
  for (auto& l : listeners_) l->close();
  guards_.clear();
  for (auto& c : contexts_) c->stop();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

}  // namespace datashare::sidecar::http
