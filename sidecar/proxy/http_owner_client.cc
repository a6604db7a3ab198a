#include "sidecar/proxy/http_owner_client.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
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

class http_owner_client::connection : public std::enable_shared_from_this<connection> {
 public:
  connection(http_owner_client& client, net::io_context& ioc)
      : client_(client), ioc_(ioc), stream_(net::make_strand(ioc)), resolver_(stream_.get_executor()) {}

  // Everything happens on the connection's strand, including taking the request's parameters:
  // a pooled connection may be handed to a new request while its last handler still runs.
  void run(std::string target, time_point deadline, callback done, bool reused) {
    net::dispatch(stream_.get_executor(), [self = shared_from_this(), target = std::move(target), deadline,
                                           done = std::move(done), reused]() mutable {
      self->target_ = std::move(target);
      self->deadline_ = deadline;
      self->done_ = std::move(done);
      self->reused_ = reused;
      self->start();
    });
  }

 private:
  void start() {
    stream_.expires_at(deadline_);
    if (connected_) {
      write();
      return;
    }
    resolver_.async_resolve(
        client_.host_, client_.port_,
        [self = shared_from_this()](beast::error_code ec, const tcp::resolver::results_type& results) {
          if (ec) {
            self->fail(fetch_result::kind::connect_error, "resolve " + self->client_.host_ + ": " + ec.message());
            return;
          }
          self->connect(results);
        });
  }

  void connect(const tcp::resolver::results_type& results) {
    stream_.async_connect(results, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        self->fail(ec == beast::error::timeout ? fetch_result::kind::timeout : fetch_result::kind::connect_error,
                   "connect " + self->client_.host_ + ":" + self->client_.port_ + ": " + ec.message());
        return;
      }
      beast::error_code ignored;
      self->stream_.socket().set_option(tcp::no_delay(true), ignored);
      self->connected_ = true;
      self->write();
    });
  }

  void write() {
    req_ = {};
    req_.method(bhttp::verb::get);
    req_.target(target_);
    req_.version(11);
    req_.set(bhttp::field::host, client_.host_header_);
    req_.set(bhttp::field::accept, "application/json");
    req_.keep_alive(true);
    bhttp::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        self->broken(ec, "write");
        return;
      }
      self->read();
    });
  }

  void read() {
    buffer_.consume(buffer_.size());
    parser_.emplace();
    parser_->body_limit(kMaxResponseBytes);
    bhttp::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      if (ec) {
        self->broken(ec, "read", n);
        return;
      }
      self->succeed();
    });
  }

  void broken(beast::error_code ec, const char* op, std::size_t bytes_read = 0) {
    if (ec == beast::error::timeout) {
      fail(fetch_result::kind::timeout, "no response before the deadline");
      return;
    }
    if (reused_ && bytes_read == 0 &&
        (ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe)) {
      // The owner closed this idle keep-alive connection: once more, on a fresh one.
      close();
      auto fresh = std::make_shared<connection>(client_, ioc_);
      fresh->run(std::move(target_), deadline_, std::move(done_), false);
      return;
    }
    fail(fetch_result::kind::io_error, std::string(op) + ": " + ec.message());
  }

  void succeed() {
    auto& res = parser_->get();
    fetch_result r;
    r.status = res.result_int();
    r.body = std::move(res.body());
    const bool keep = res.keep_alive();
    parser_.reset();
    auto done = std::move(done_);
    stream_.expires_never();
    if (keep) {
      client_.give_back(ioc_, shared_from_this());
    } else {
      close();
    }
    done(std::move(r));
  }

  void fail(fetch_result::kind k, std::string detail) {
    close();
    auto done = std::move(done_);
    done(fetch_result{.outcome = k, .status = 0, .body = {}, .detail = std::move(detail)});
  }

  void close() {
    connected_ = false;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  http_owner_client& client_;
  net::io_context& ioc_;
  beast::tcp_stream stream_;
  tcp::resolver resolver_;
  beast::flat_buffer buffer_;
  bhttp::request<bhttp::empty_body> req_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  std::string target_;
  time_point deadline_{};
  callback done_;
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
