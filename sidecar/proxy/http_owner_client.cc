#include "sidecar/proxy/http_owner_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "sidecar/http/server.h"

namespace datashare::sidecar::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

namespace {
constexpr std::uint64_t kMaxResponseBytes = 8 << 20;
}

// One keep-alive connection, driven by hand like the server's sessions: the request is sent
// with one non-blocking send in the caller's turn, the answer read with non-blocking reads when
// the socket is readable and fed to Beast's parser. Its io_context is run by one thread (an HTTP
// server I/O thread, or the client's own context), so no strand is needed; a call generation
// keeps a late deadline or wake-up of one request away from the next on the same connection.
class http_owner_client::connection : public std::enable_shared_from_this<connection> {
 public:
  connection(http_owner_client& client, net::io_context& ioc)
      : client_(client), ioc_(ioc), socket_(ioc.get_executor()), timer_(ioc.get_executor()) {}

  // Everything happens on the connection's io_context, including taking the request's
  // parameters: get() may be called from any thread.
  void run(std::string target, time_point deadline, callback done, bool reused) {
    if (ioc_.get_executor().running_in_this_thread()) {
      begin(std::move(target), deadline, std::move(done), reused);
      return;
    }
    net::post(ioc_, [self = shared_from_this(), target = std::move(target), deadline, done = std::move(done),
                     reused]() mutable { self->begin(std::move(target), deadline, std::move(done), reused); });
  }

 private:
  using socket_type = net::basic_stream_socket<tcp, net::io_context::executor_type>;
  using timer_type = net::basic_waitable_timer<std::chrono::steady_clock, net::wait_traits<std::chrono::steady_clock>,
                                               net::io_context::executor_type>;

  void begin(std::string target, time_point deadline, callback done, bool reused) {
    target_ = std::move(target);
    deadline_ = deadline;
    done_ = std::move(done);
    reused_ = reused;
    bytes_read_ = 0;
    const std::uint64_t call = ++call_;
    timer_.expires_at(deadline_);
    timer_.async_wait([self = shared_from_this(), call](boost::system::error_code ec) {
      if (!ec && call == self->call_ && self->done_) self->expire();
    });
    if (connected_) {
      write();
      return;
    }
    auto resolver = std::make_shared<tcp::resolver>(ioc_);
    resolver->async_resolve(client_.host_, client_.port_,
                            [self = shared_from_this(), call, resolver](boost::system::error_code ec,
                                                                        const tcp::resolver::results_type& results) {
                              if (call != self->call_ || !self->done_) return;
                              if (ec) {
                                self->fail(fetch_result::kind::connect_error,
                                           "resolve " + self->client_.host_ + ": " + ec.message());
                                return;
                              }
                              self->connect(results);
                            });
  }

  void connect(const tcp::resolver::results_type& results) {
    const std::uint64_t call = call_;
    net::async_connect(
        socket_, results, [self = shared_from_this(), call](boost::system::error_code ec, const tcp::endpoint&) {
          if (call != self->call_ || !self->done_) return;
          if (ec) {
            self->fail(fetch_result::kind::connect_error,
                       "connect " + self->client_.host_ + ":" + self->client_.port_ + ": " + ec.message());
            return;
          }
          boost::system::error_code ignored;
          self->socket_.set_option(tcp::no_delay(true), ignored);
          self->socket_.non_blocking(true, ignored);
          self->connected_ = true;
          self->write();
        });
  }

  void write() {
    request_.clear();
    request_ += "GET ";
    request_ += target_;
    request_ += " HTTP/1.1\r\nHost: ";
    request_ += client_.host_header_;
    request_ += "\r\nAccept: application/json\r\n\r\n";
    written_ = 0;
    send();
  }

  void send() {
    boost::system::error_code ec;
    while (written_ < request_.size()) {
      const std::size_t n = socket_.send(net::buffer(request_.data() + written_, request_.size() - written_), 0, ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        await(tcp::socket::wait_write, "write", &connection::send);
        return;
      }
      if (ec) {
        broken(ec, "write");
        return;
      }
      written_ += n;
    }
    parser_.emplace();
    parser_->body_limit(kMaxResponseBytes);
    parser_->eager(true);
    buffer_.clear();
    wait_readable();
  }

  void wait_readable() { await(tcp::socket::wait_read, "read", &connection::on_readable); }

  // Once the socket is ready for `what`, `next` goes on with this request (unless it ended
  // meanwhile: a deadline, or the connection handed to the next request).
  void await(tcp::socket::wait_type what, const char* op, void (connection::*next)()) {
    const std::uint64_t call = call_;
    socket_.async_wait(what, [self = shared_from_this(), call, op, next](boost::system::error_code ec) {
      if (call != self->call_ || !self->done_) return;
      if (ec) {
        self->broken(ec, op);
        return;
      }
      ((*self).*next)();
    });
  }

  void on_readable() {
    for (;;) {
      boost::system::error_code ec;
      auto space = buffer_.prepare(kReadChunk);
      const std::size_t n = socket_.read_some(space, ec);
      if (ec == net::error::would_block || ec == net::error::try_again) {
        wait_readable();
        return;
      }
      if (ec == net::error::eof) {
        // A response without a length ends with the connection.
        if (parser_->got_some()) {
          boost::system::error_code end;
          parser_->put_eof(end);
          if (!end && parser_->is_done()) {
            connected_ = false;
            succeed(false);
            return;
          }
        }
        broken(ec, "read");
        return;
      }
      if (ec) {
        broken(ec, "read");
        return;
      }
      buffer_.commit(n);
      bytes_read_ += n;
      while (buffer_.size() > 0 && !parser_->is_done()) {
        boost::system::error_code perr;
        const std::size_t used = parser_->put(buffer_.data(), perr);
        buffer_.consume(used);
        if (perr == bhttp::error::need_more) break;
        if (perr) {
          fail(fetch_result::kind::io_error, std::string("read: ") + perr.message());
          return;
        }
        if (used == 0) break;
      }
      if (parser_->is_done()) {
        succeed(parser_->get().keep_alive());
        return;
      }
    }
  }

  // The deadline passed with the request still out: the connection is of no further use (its
  // answer may still come), so it is closed rather than pooled.
  void expire() { fail(fetch_result::kind::timeout, "no response before the deadline"); }

  void broken(boost::system::error_code ec, const char* op) {
    if (reused_ && bytes_read_ == 0 &&
        (ec == net::error::eof || ec == net::error::connection_reset || ec == net::error::broken_pipe)) {
      // The owner closed this idle keep-alive connection: once more, on a fresh one.
      close();
      auto fresh = std::make_shared<connection>(client_, ioc_);
      auto done = std::move(done_);
      ++call_;
      fresh->begin(std::move(target_), deadline_, std::move(done), false);
      return;
    }
    fail(fetch_result::kind::io_error, std::string(op) + ": " + ec.message());
  }

  void succeed(bool keep) {
    auto& res = parser_->get();
    fetch_result r;
    r.status = res.result_int();
    r.body = std::move(res.body());
    parser_.reset();
    auto done = std::move(done_);
    ++call_;  // a deadline still queued for this request finds nothing to do
    timer_.cancel();
    if (keep && connected_) {
      client_.give_back(ioc_, shared_from_this());
    } else {
      close();
    }
    done(std::move(r));
  }

  void fail(fetch_result::kind k, std::string detail) {
    close();
    auto done = std::move(done_);
    ++call_;
    timer_.cancel();
    done(fetch_result{.outcome = k, .status = 0, .body = {}, .detail = std::move(detail)});
  }

  void close() {
    connected_ = false;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  static constexpr std::size_t kReadChunk = 8192;

  http_owner_client& client_;
  net::io_context& ioc_;
  socket_type socket_;
  timer_type timer_;
  beast::flat_buffer buffer_;
  std::string request_;
  std::size_t written_ = 0;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  std::string target_;
  time_point deadline_{};
  callback done_;
  std::uint64_t call_ = 0;  // the request in hand; handlers of an earlier one return at once
  std::size_t bytes_read_ = 0;
  bool reused_ = false;
  bool connected_ = false;
};

http_owner_client::http_owner_client(net::io_context& ioc, std::string host, std::uint16_t port, std::size_t max_idle)
    : ioc_(ioc),
      host_(std::move(host)),
      port_(std::to_string(port)),
      host_header_(host_ + ":" + port_),
      max_idle_(max_idle) {}

http_owner_client::~http_owner_client() = default;

std::shared_ptr<http_owner_client::connection> http_owner_client::take(net::io_context& ioc) {
  std::lock_guard lock(mu_);
  for (auto& [where, pool] : idle_) {
    if (where != &ioc || pool.empty()) continue;
    auto c = std::move(pool.back());
    pool.pop_back();
    return c;
  }
  return nullptr;
}

void http_owner_client::give_back(net::io_context& ioc, std::shared_ptr<connection> c) {
  if (max_idle_ == 0) return;
  std::lock_guard lock(mu_);
  for (auto& [where, pool] : idle_) {
    if (where != &ioc) continue;
    if (pool.size() < max_idle_) pool.push_back(std::move(c));
    return;
  }
  idle_.emplace_back(&ioc, std::vector<std::shared_ptr<connection>>{std::move(c)});
}

void http_owner_client::get(const std::string& target, time_point deadline, callback done) {
  net::io_context* here = http::server::current_context();
  net::io_context& ioc = here != nullptr ? *here : ioc_;
  if (auto c = take(ioc)) {
    c->run(target, deadline, std::move(done), true);
    return;
  }
  std::make_shared<connection>(*this, ioc)->run(target, deadline, std::move(done), false);
}

}  // namespace datashare::sidecar::proxy
