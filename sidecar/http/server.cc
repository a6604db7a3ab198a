#include "sidecar/http/server.h"

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <iostream>
#include <optional>

namespace datashare::sidecar::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

// The connection's socket, bound to its thread's io_context directly: no type-erased executor
// between a completion and its handler (any_io_executor's copies and queries were ~5 % of a GET).
using socket_type = net::basic_stream_socket<tcp, net::io_context::executor_type>;

// One connection. Its own small loop instead of Beast's composed read and write operations:
// wait until the socket is readable (no speculative read that the closed-loop client has not
// answered yet), read what is there without blocking, feed it to the parser, call the handler;
// write the answer at once without blocking (it almost always fits the socket's buffer; the rest
// waits for writability), then wait for the next request. A GET then costs the system calls
// recvmsg and sendmsg, plus its share of one epoll_wait, and no scheduler round trip between the
// answer and the next read. The idle timeout is one timer per connection that looks at the time
// of the last activity when it fires, instead of a timer set and cancelled around every
// operation. Everything of a session runs on its io_context's one thread.
class session : public std::enable_shared_from_this<session> {
 public:
  session(net::io_context& ctx, handler& h, const limits& l)
      : socket_(ctx.get_executor()), timer_(ctx), handler_(h), limits_(l) {}

  socket_type& socket() { return socket_; }

  void start() {
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->socket_.set_option(tcp::no_delay(true), ignored);
      self->socket_.non_blocking(true, ignored);
      self->last_ = std::chrono::steady_clock::now();
      self->arm_timer(self->limits_.idle_timeout);
      self->read();
    });
  }

  void answer(response r) {
    // Inline when called from the handler on this thread; posted when from another thread.
    net::dispatch(socket_.get_executor(), [self = shared_from_this(), r = std::move(r)] { self->write(r, false); });
  }

  void abort() {
    net::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

 private:
  enum class phase { reading, handling, writing, closed };

  void read() {
    phase_ = phase::reading;
    head_ = false;
    parser_.emplace();
    parser_->header_limit(limits_.header_bytes);
    parser_->body_limit(limits_.body_bytes);
    parser_->eager(true);
    if (buffer_.size() != 0) {
      // Pipelined bytes already here: parse them on a fresh turn of the loop (no recursion
      // through the handler, however many requests one read brought).
      net::post(socket_.get_executor(), [self = shared_from_this()] { self->parse(); });
      return;
    }
    wait_readable();
  }

  void wait_readable() {
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        self->close();
        return;
      }
      self->on_readable();
    });
  }

  void on_readable() {
    if (phase_ == phase::closed) return;
    beast::error_code ec;
    std::size_t n = socket_.read_some(buffer_.prepare(beast::read_size(buffer_, 65536)), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      wait_readable();
      return;
    }
    if (ec == net::error::eof || (!ec && n == 0)) {
      // The peer is done: between requests that is the end of the connection; inside one, the
      // request is cut short.
      if (parser_->got_some()) {
        fail(bhttp::error::partial_message);
      } else {
        close();
      }
      return;
    }
    if (ec) {
      close();
      return;
    }
    buffer_.commit(n);
    parse();
  }

  void parse() {
    if (phase_ == phase::closed) return;
    while (buffer_.size() != 0 && !parser_->is_done()) {
      beast::error_code ec;
      std::size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == bhttp::error::need_more) break;
      if (ec) {
        fail(ec);
        return;
      }
      if (used == 0) break;
    }
    if (!parser_->is_done()) {
      wait_readable();  // the parser itself refuses a header over its limit
      return;
    }
    keep_alive_ = parser_->get().keep_alive();
    head_ = parser_->get().method() == bhttp::verb::head;
    phase_ = phase::handling;
    last_ = std::chrono::steady_clock::now();
    // The request stays in parser_ until the handler has returned: an answer given inline is
    // written at once, but the next read (which resets the parser) waits for the handler.
    in_handler_ = true;
    handler_(parser_->get(), responder(shared_from_this()));
    in_handler_ = false;
    if (read_after_handler_) {
      read_after_handler_ = false;
      read();
    }
  }

  // Anything that does not parse (bad method, header too large, bad chunk, body over the limit,
  // a request cut short): say so and close, the stream cannot be trusted any more.
  void fail(beast::error_code ec) {
    response r;
    r.status = ec == bhttp::error::body_limit ? 413 : (ec == bhttp::error::header_limit ? 431 : 400);
    r.body = R"({"error":"malformed HTTP request: )" + ec.message() + "\"}";
    write(r, true);
  }

  // One buffer, one send: the status line, the headers and the body (none for HEAD), kept between
  // requests so a keep-alive connection allocates it once.
  void write(const response& r, bool close_after) {
    if (phase_ == phase::closed) return;
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
    phase_ = phase::writing;
    written_ = 0;
    last_ = std::chrono::steady_clock::now();
    send();
  }

  void send() {
    if (phase_ == phase::closed) return;
    while (written_ < out_.size()) {
      beast::error_code ec;
      std::size_t n = socket_.write_some(net::buffer(out_.data() + written_, out_.size() - written_), ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        // The peer reads slowly: wait until the socket takes more (the idle timer bounds it).
        socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](beast::error_code e) {
          if (e) {
            self->close();
            return;
          }
          self->last_ = std::chrono::steady_clock::now();
          self->send();
        });
        return;
      }
      if (ec) {
        close();
        return;
      }
      written_ += n;
    }
    if (close_) {
      close();
      return;
    }
    last_ = std::chrono::steady_clock::now();
    if (in_handler_) {
      read_after_handler_ = true;
      phase_ = phase::reading;
      return;
    }
    read();
  }

  // Fires once per idle_timeout (or sooner when the last activity says so): closes a connection
  // that has waited for a request, or for the peer to take an answer, that long. Never while a
  // handler works on an answer (the publisher's waits for its fsync).
  template <class Duration>
  void arm_timer(Duration after) {
    timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(after));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->phase_ == phase::closed) return;
      auto idle = std::chrono::steady_clock::now() - self->last_;
      auto limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(self->limits_.idle_timeout);
      if (self->phase_ != phase::handling && idle >= limit) {
        self->close();
        return;
      }
      self->arm_timer(self->phase_ == phase::handling ? limit : limit - idle);
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
    if (phase_ == phase::closed) return;
    phase_ = phase::closed;
    beast::error_code ignored;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  socket_type socket_;
  net::steady_timer timer_;
  handler& handler_;
  const limits& limits_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string out_;
  std::size_t written_ = 0;
  std::chrono::steady_clock::time_point last_;
  phase phase_ = phase::reading;
  bool keep_alive_ = true;
  bool head_ = false;
  bool close_ = false;
  bool in_handler_ = false;
  bool read_after_handler_ = false;
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
    auto s = std::make_shared<session>(owner_.next_context(), handler_, limits_);
    acceptor_.async_accept(s->socket(), [self = shared_from_this(), s](beast::error_code ec) {
      if (ec == net::error::operation_aborted) return;
      if (!ec) s->start();
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

namespace {
thread_local net::io_context* current_io = nullptr;

// io_context::run(), except that after each handler the thread polls (poll(): ready handlers
// and the reactor's epoll_wait with a zero timeout) for up to `window` before it blocks again.
// A thread that has run nothing for `window` sleeps as run() would, so an idle sidecar burns
// nothing; under load it never reaches the sleep anyway.
void run_polling(net::io_context& c, std::chrono::microseconds window) {
  using clock = std::chrono::steady_clock;
  auto until = clock::now() + window;
  for (;;) {
    std::size_t ran = c.poll();
    if (c.stopped()) return;
    if (ran > 0) {
      until = clock::now() + window;
      continue;
    }
    if (clock::now() < until) continue;
    if (c.run_one() == 0) return;  // stopped (or out of work: the work guard was released)
    until = clock::now() + window;
  }
}
}  // namespace

net::io_context* server::current_context() {
  return current_io;
}

void server::start() {
  for (auto& l : listeners_) l->accept();
  for (auto& c : contexts_) {
    workers_.emplace_back([&c, poll = limits_.busy_poll] {
      current_io = c.get();
      if (poll.count() > 0) {
        run_polling(*c, poll);
      } else {
        c->run();
      }
    });
  }
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
