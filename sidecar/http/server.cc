#include "sidecar/http/server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <iostream>
#include <optional>
#include <system_error>
#include <unordered_map>
#include <vector>

namespace datashare::sidecar::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

// The accepting socket, bound to its thread's io_context directly: no type-erased executor.
using socket_type = net::basic_stream_socket<tcp, net::io_context::executor_type>;

// The connections of one I/O thread, each registered once (edge-triggered, for reading and
// writing) in an epoll set of their own; the set itself is one descriptor in the io_context's
// reactor, re-armed once per batch of ready connections. Waiting on each socket through Asio
// (`async_wait`) costs an `epoll_ctl` per request: Asio re-arms a descriptor it was asked to wait
// on without a speculative read, and a speculative read costs a failed `recv` instead (P2 in
// docs/benchmarks.md: 3 system calls per GET where one event loop needs 2). An Asio service of
// its io_context: made on first use, gone with it.
class connection_poller : public net::execution_context::service {
 public:
  using key_type = connection_poller;
  static net::execution_context::id id;

  explicit connection_poller(net::io_context& io) : net::execution_context::service(io), io_(io), set_(io) {
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    set_.assign(fd);
  }

  // Registers a connection's socket; the poller keeps the session alive until retire(). False
  // when the socket cannot be registered (the caller closes it).
  bool add(const std::shared_ptr<session>& s, int fd);
  // The session closed its socket: kept alive until no event of the current batch can reach it.
  void retire(session* s);

 private:
  void shutdown() override {
    beast::error_code ignored;
    set_.close(ignored);
    live_.clear();
    retired_.clear();
  }
  void arm();
  void on_ready();

  net::io_context& io_;
  net::posix::stream_descriptor set_;
  std::unordered_map<session*, std::shared_ptr<session>> live_;
  std::vector<std::shared_ptr<session>> retired_;
  bool armed_ = false;
  bool in_batch_ = false;
  bool sweep_posted_ = false;
};

net::execution_context::id connection_poller::id;

// One connection. Its own small loop instead of Beast's composed read and write operations: when
// the socket is readable, read what is there without blocking, feed it to the parser, call the
// handler; write the answer at once without blocking (it almost always fits the socket's
// buffer; the rest waits until the socket takes more), then wait for the next request. A GET
// then costs the system calls recv and send plus its share of the poller's epoll_wait, and no
// scheduler round trip between the answer and the next read. Readiness is edge-triggered: a read
// shorter than the buffer drained the socket (new bytes raise a new edge), a full one may have
// left more. The idle timeout is one timer per connection that looks at the time of the last
// activity when it fires, instead of a timer set and cancelled around every operation.
// Everything of a session runs on its io_context's one thread.
class session : public std::enable_shared_from_this<session> {
 public:
  session(net::io_context& ctx, handler& h, const limits& l)
      : io_(ctx), socket_(ctx.get_executor()), timer_(ctx), handler_(h), limits_(l) {}
  ~session() {
    if (fd_ >= 0) ::close(fd_);
  }
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  socket_type& socket() { return socket_; }

  void start() {
    net::dispatch(io_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->socket_.set_option(tcp::no_delay(true), ec);
      int fd = self->socket_.release(ec);
      if (ec || fd < 0) return;
      self->fd_ = fd;
      int flags = ::fcntl(fd, F_GETFL, 0);
      if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        self->phase_ = phase::closed;
        return;  // the destructor closes it
      }
      self->poller_ = &net::use_service<connection_poller>(self->io_);
      if (!self->poller_->add(self, fd)) {
        self->phase_ = phase::closed;
        return;
      }
      self->last_ = std::chrono::steady_clock::now();
      self->arm_timer(self->limits_.idle_timeout);
      self->read();
    });
  }

  void answer(response r) {
    // Inline when called from the handler on this thread; posted when from another thread.
    net::dispatch(io_.get_executor(), [self = shared_from_this(), r = std::move(r)] { self->write(r, false); });
  }

  void abort() {
    net::dispatch(io_.get_executor(), [self = shared_from_this()] { self->close(); });
  }

  // From the poller: what epoll reported for the socket.
  void on_event(std::uint32_t events) {
    if (phase_ == phase::closed) return;
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) hangup_ = true;
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) readable_ = true;
    if (want_read_ && readable_) {
      want_read_ = false;
      on_readable();
    } else if (want_write_ && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) {
      want_write_ = false;
      last_ = std::chrono::steady_clock::now();
      send();
    }
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
      net::post(io_.get_executor(), [self = shared_from_this()] { self->parse(); });
      return;
    }
    wait_readable();
  }

  void wait_readable() {
    if (readable_) {
      // The last read filled the buffer (or the peer hung up): there may be more without a new
      // edge. Read on a fresh turn of the loop, not down the handler's stack.
      net::post(io_.get_executor(), [self = shared_from_this()] { self->on_readable(); });
      return;
    }
    want_read_ = true;
  }

  void on_readable() {
    if (phase_ == phase::closed) return;
    auto space = buffer_.prepare(beast::read_size(buffer_, 65536));
    ssize_t n;
    do {
      n = ::recv(fd_, space.data(), space.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      readable_ = false;  // drained: the next bytes raise an edge
      want_read_ = true;
      return;
    }
    if (n == 0) {
      // The peer is done: between requests that is the end of the connection; inside one, the
      // request is cut short.
      if (parser_->got_some()) {
        fail(bhttp::error::partial_message);
      } else {
        close();
      }
      return;
    }
    if (n < 0) {
      close();
      return;
    }
    if (static_cast<std::size_t>(n) < space.size() && !hangup_) readable_ = false;
    buffer_.commit(static_cast<std::size_t>(n));
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
      ssize_t n = ::send(fd_, out_.data() + written_, out_.size() - written_, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // The peer reads slowly: wait until the socket takes more (the idle timer bounds it).
        want_write_ = true;
        return;
      }
      if (n < 0) {
        close();
        return;
      }
      written_ += static_cast<std::size_t>(n);
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
    want_read_ = want_write_ = false;
    timer_.cancel();
    if (fd_ >= 0) {
      ::shutdown(fd_, SHUT_RDWR);
      ::close(fd_);  // also leaves the poller's epoll set
      fd_ = -1;
      if (poller_ != nullptr) poller_->retire(this);
    }
  }

  net::io_context& io_;
  socket_type socket_;  // until start(): then the session owns the descriptor itself (fd_)
  int fd_ = -1;
  connection_poller* poller_ = nullptr;
  net::steady_timer timer_;
  handler& handler_;
  const limits& limits_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string out_;
  std::size_t written_ = 0;
  std::chrono::steady_clock::time_point last_;
  phase phase_ = phase::reading;
  bool readable_ = true;     // no edge is owed: the socket may hold bytes (or a hang-up) unread
  bool hangup_ = false;      // the peer closed or the socket failed: reads no longer block
  bool want_read_ = false;   // waiting for the poller to report the socket readable
  bool want_write_ = false;  // waiting for the poller to report the socket writable
  bool keep_alive_ = true;
  bool head_ = false;
  bool close_ = false;
  bool in_handler_ = false;
  bool read_after_handler_ = false;
};

bool connection_poller::add(const std::shared_ptr<session>& s, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = s.get();
  if (::epoll_ctl(set_.native_handle(), EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  live_.emplace(s.get(), s);
  arm();
  return true;
}

void connection_poller::retire(session* s) {
  auto it = live_.find(s);
  if (it == live_.end()) return;
  retired_.push_back(std::move(it->second));
  live_.erase(it);
  if (!in_batch_ && !sweep_posted_) {
    // Closed outside a batch (its timer, an abort): released on the next turn of the loop,
    // after the closing call has returned.
    sweep_posted_ = true;
    net::post(io_, [this] {
      sweep_posted_ = false;
      if (!in_batch_) retired_.clear();
    });
  }
}

void connection_poller::arm() {
  if (armed_ || !set_.is_open()) return;
  armed_ = true;
  set_.async_wait(net::posix::stream_descriptor::wait_read, [this](const beast::error_code& ec) {
    armed_ = false;
    if (ec) return;  // closed with the io_context
    on_ready();
  });
}

void connection_poller::on_ready() {
  std::array<epoll_event, 64> events{};
  in_batch_ = true;
  for (int round = 0; round < 4; ++round) {
    int n = ::epoll_wait(set_.native_handle(), events.data(), static_cast<int>(events.size()), 0);
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) {
      static_cast<session*>(events[static_cast<std::size_t>(i)].data.ptr)
          ->on_event(events[static_cast<std::size_t>(i)].events);
    }
    if (static_cast<std::size_t>(n) < events.size()) break;
  }
  in_batch_ = false;
  retired_.clear();
  if (!live_.empty()) arm();
}

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
    // Round robin per listener: a listener with few connections (the gateway's, one per lane)
    // spreads them over the threads whatever the other listeners (probes, scrapes) accepted.
    auto s = std::make_shared<session>(owner_.context_for(turn_++), handler_, limits_);
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
  std::size_t turn_ = 0;  // accept() runs on the acceptor's strand, one at a time
};

server::server(int threads, limits l) : limits_(l) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    contexts_.push_back(std::make_unique<net::io_context>(1));
    guards_.push_back(net::make_work_guard(*contexts_.back()));
  }
}

net::io_context& server::context_for(std::size_t turn) {
  return *contexts_[turn % contexts_.size()];
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
