#include "tests/support/tcp_proxy.h"

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <future>

namespace datashare::testing {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct tcp_proxy::link : std::enable_shared_from_this<link> {
  explicit link(asio::io_context& io) : client(io), server(io) {}
  tcp::socket client;
  tcp::socket server;
  std::array<char, 16384> up{};
  std::array<char, 16384> down{};

  void close() {
    boost::system::error_code ignored;
    client.shutdown(tcp::socket::shutdown_both, ignored);
    client.close(ignored);
    server.shutdown(tcp::socket::shutdown_both, ignored);
    server.close(ignored);
  }

  void pump(tcp::socket& from, tcp::socket& to, std::array<char, 16384>& buf) {
    auto self = shared_from_this();
    from.async_read_some(asio::buffer(buf), [self, &from, &to, &buf](boost::system::error_code ec, size_t n) {
      if (ec) return self->close();
      asio::async_write(to, asio::buffer(buf.data(), n),
                        [self, &from, &to, &buf](boost::system::error_code wec, size_t) {
                          if (wec) return self->close();
                          self->pump(from, to, buf);
                        });
    });
  }
};

tcp_proxy::tcp_proxy(std::string target_host, uint16_t target_port)
    : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
      target_(asio::ip::make_address(target_host), target_port),
      port_(acceptor_.local_endpoint().port()) {
  accept();
  thread_ = std::thread([this] { io_.run(); });
}

tcp_proxy::~tcp_proxy() {
  asio::post(io_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    std::lock_guard lock(mu_);
    for (const auto& l : links_) l->close();
    links_.clear();
  });
  io_.stop();
  thread_.join();
}

void tcp_proxy::accept() {
  auto l = std::make_shared<link>(io_);
  acceptor_.async_accept(l->client, [this, l](boost::system::error_code ec) {
    if (ec) return;  // closed
    ++accepted_;
    if (refusing_) {
      l->close();
    } else {
      l->server.async_connect(target_, [this, l](boost::system::error_code cec) {
        if (cec) return l->close();
        {
          std::lock_guard lock(mu_);
          links_.insert(l);
        }
        l->pump(l->client, l->server, l->up);
        l->pump(l->server, l->client, l->down);
      });
    }
    accept();
  });
}

void tcp_proxy::cut() {
  std::promise<void> done;
  asio::post(io_, [this, &done] {
    std::lock_guard lock(mu_);
    for (const auto& l : links_) l->close();
    links_.clear();
    done.set_value();
  });
  done.get_future().wait();
}

void tcp_proxy::set_refusing(bool refusing) {
  refusing_ = refusing;
}

}  // namespace datashare::testing
