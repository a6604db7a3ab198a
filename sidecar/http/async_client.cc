#include "sidecar/http/async_client.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

namespace datashare::sidecar::http {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

namespace {
constexpr std::uint64_t kMaxResponseBytes = 64 << 20;

std::error_code to_std(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return std::make_error_code(std::errc::timed_out);
  if (ec == net::error::connection_refused) return std::make_error_code(std::errc::connection_refused);
  return static_cast<std::error_code>(ec);
}
}  // namespace

class async_client::connection : public std::enable_shared_from_this<connection> {
 public:
  explicit connection(async_client& client)
      : client_(client), stream_(net::make_strand(client.ioc_)), resolver_(stream_.get_executor()) {}

  // Everything happens on the connection's strand, including taking the call's parameters: a
  // pooled connection may be handed to a new call while its last handler still returns.
  void run(bhttp::verb method, std::string target, std::string body, std::string_view content_type,
           std::chrono::steady_clock::time_point deadline, callback done, bool reused) {
    net::dispatch(
        stream_.get_executor(), [self = shared_from_this(), method, target = std::move(target), body = std::move(body),
                                 content_type, deadline, done = std::move(done), reused]() mutable {
          self->req_ = {};
          self->req_.method(method);
          self->req_.target(target);
          self->req_.version(11);
          self->req_.set(bhttp::field::host, self->client_.host_header_);
          self->req_.keep_alive(true);
          if (!body.empty())
            self->req_.set(bhttp::field::content_type, beast::string_view(content_type.data(), content_type.size()));
          self->content_type_ = content_type;
          self->req_.body() = std::move(body);
          self->req_.prepare_payload();
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
    resolver_.async_resolve(client_.origin_.host, client_.origin_.port,
                            [self = shared_from_this()](beast::error_code ec, const tcp::resolver::results_type& r) {
                              if (ec) {
                                self->fail(ec);
                                return;
                              }
                              self->connect(r);
                            });
  }

  void connect(const tcp::resolver::results_type& results) {
    stream_.async_connect(results, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        self->fail(ec);
        return;
      }
      beast::error_code ignored;
      self->stream_.socket().set_option(tcp::no_delay(true), ignored);
      self->connected_ = true;
      self->write();
    });
  }

  void write() {
    bhttp::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        self->broken(ec, 0);
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
        self->broken(ec, n);
        return;
      }
      self->succeed();
    });
  }

  void broken(beast::error_code ec, std::size_t bytes_read) {
    if (reused_ && bytes_read == 0 && std::chrono::steady_clock::now() < deadline_ &&
        (ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe)) {
      // The peer closed this idle keep-alive connection: once more, on a fresh one.
      close();
      auto fresh = std::make_shared<connection>(client_);
      fresh->run(req_.method(), std::string(req_.target()), std::move(req_.body()), content_type_, deadline_,
                 std::move(done_), false);
      return;
    }
    fail(ec);
  }

  void succeed() {
    auto& res = parser_->get();
    client_reply r;
    r.status = res.result_int();
    r.body = std::move(res.body());
    const bool keep = res.keep_alive();
    parser_.reset();
    req_.body().clear();
    auto done = std::move(done_);
    stream_.expires_never();
    if (keep) {
      client_.give_back(shared_from_this());
    } else {
      close();
    }
    done({}, std::move(r));
  }

  void fail(beast::error_code ec) {
    close();
    auto done = std::move(done_);
    done(to_std(ec), {});
  }

  void close() {
    connected_ = false;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  async_client& client_;
  beast::tcp_stream stream_;
  tcp::resolver resolver_;
  beast::flat_buffer buffer_;
  bhttp::request<bhttp::string_body> req_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  std::string_view content_type_;
  std::chrono::steady_clock::time_point deadline_{};
  callback done_;
  bool reused_ = false;
  bool connected_ = false;
};

async_client::async_client(net::io_context& ioc, origin o, std::size_t max_idle)
    : ioc_(ioc),
      origin_(std::move(o)),
      host_header_((origin_.host.find(':') != std::string::npos ? "[" + origin_.host + "]" : origin_.host) + ":" +
                   origin_.port),
      max_idle_(max_idle) {}

async_client::~async_client() = default;

std::shared_ptr<async_client::connection> async_client::take() {
  std::lock_guard lock(mu_);
  if (idle_.empty()) return nullptr;
  auto c = std::move(idle_.back());
  idle_.pop_back();
  return c;
}

void async_client::give_back(std::shared_ptr<connection> c) {
  std::lock_guard lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
}

void async_client::call(bhttp::verb method, std::string target, std::string body,
                        std::chrono::steady_clock::time_point deadline, callback done, std::string_view content_type) {
  if (auto c = take()) {
    c->run(method, std::move(target), std::move(body), content_type, deadline, std::move(done), true);
    return;
  }
  std::make_shared<connection>(*this)->run(method, std::move(target), std::move(body), content_type, deadline,
                                           std::move(done), false);
}

}  // namespace datashare::sidecar::http
