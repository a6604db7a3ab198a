#include "sidecar/proxy/http_owner_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace datashare::sidecar::proxy {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

// A scripted owner on blocking sockets: each connection gets a thread that reads requests and
// lets the script answer them. `answer(socket, connection, request)` returns false to close.
class scripted_owner {
 public:
  using script = std::function<bool(tcp::socket&, int connection, int request)>;

  explicit scripted_owner(script s) : script_(std::move(s)), acceptor_(ioc_, {net::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] {
      for (;;) {
        auto socket = std::make_shared<tcp::socket>(ioc_);
        boost::system::error_code ec;
        acceptor_.accept(*socket, ec);
        if (ec || stopping_) return;
        const int connection = connections_++;
        std::lock_guard lock(mu_);
        open_.push_back(socket);
        threads_.emplace_back([this, connection, socket] { serve(*socket, connection); });
      }
    });
  }

  ~scripted_owner() {
    stopping_ = true;
    {  // wake the acceptor
      tcp::socket poke(ioc_);
      boost::system::error_code ec;
      poke.connect({net::ip::make_address("127.0.0.1"), port_}, ec);
    }
    accept_thread_.join();
    std::lock_guard lock(mu_);
    for (auto& s : open_) {  // wakes the threads still reading
      boost::system::error_code ec;
      s->shutdown(tcp::socket::shutdown_both, ec);
    }
    for (auto& t : threads_) t.join();
  }

  std::uint16_t port() const { return port_; }
  int connections() const { return connections_; }
  int requests() const { return requests_; }

 private:
  void serve(tcp::socket& socket, int connection) {
    std::string buffer;
    for (int request = 0;; ++request) {
      boost::system::error_code ec;
      const std::size_t n = net::read_until(socket, net::dynamic_buffer(buffer), "\r\n\r\n", ec);
      if (ec || stopping_) break;
      buffer.erase(0, n);
      ++requests_;
      if (!script_(socket, connection, request)) break;
    }
    boost::system::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
  }

  script script_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<std::shared_ptr<tcp::socket>> open_;
};

void send(tcp::socket& s, const std::string& text) {
  boost::system::error_code ec;
  net::write(s, net::buffer(text), ec);
}

std::string ok(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

class HttpOwnerClientTest : public ::testing::Test {
 protected:
  HttpOwnerClientTest() : guard_(net::make_work_guard(ioc_)), io_thread_([this] { ioc_.run(); }) {}
  ~HttpOwnerClientTest() override {
    client_.reset();
    guard_.reset();
    ioc_.stop();
    io_thread_.join();
  }

  void connect_to(std::uint16_t port) { client_ = std::make_unique<http_owner_client>(ioc_, "127.0.0.1", port); }

  fetch_result get(const std::string& target, std::chrono::milliseconds timeout = 5s) {
    std::promise<fetch_result> p;
    auto f = p.get_future();
    client_->get(target, std::chrono::steady_clock::now() + timeout,
                 [&p](fetch_result r) { p.set_value(std::move(r)); });
    EXPECT_EQ(f.wait_for(timeout + 5s), std::future_status::ready) << "no answer at all for " << target;
    return f.get();
  }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> guard_;
  std::thread io_thread_;
  std::unique_ptr<http_owner_client> client_;
};

TEST_F(HttpOwnerClientTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  scripted_owner owner([](tcp::socket& s, int, int request) {
    send(s, ok("{\"n\":" + std::to_string(request) + "}"));
    return true;
  });
  connect_to(owner.port());
  for (int i = 0; i < 3; ++i) {
    auto r = get("/products/p" + std::to_string(i));
    ASSERT_EQ(r.outcome, fetch_result::kind::response) << r.detail;
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "{\"n\":" + std::to_string(i) + "}");
  }
  EXPECT_EQ(owner.connections(), 1);
  EXPECT_EQ(owner.requests(), 3);
}

TEST_F(HttpOwnerClientTest, AnIdleConnectionTheOwnerClosedIsReplacedWithoutAnError) {
  scripted_owner owner([](tcp::socket& s, int, int) {
    send(s, ok("{}"));
    return false;  // answers with keep-alive, then closes anyway
  });
  connect_to(owner.port());
  ASSERT_EQ(get("/a").outcome, fetch_result::kind::response);
  std::this_thread::sleep_for(100ms);  // the close reaches the client's idle connection
  auto r = get("/b");
  ASSERT_EQ(r.outcome, fetch_result::kind::response) << r.detail;
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(owner.connections(), 2);
}

TEST_F(HttpOwnerClientTest, ChunkedBodiesAndBodiesEndedByTheCloseArrive) {
  scripted_owner owner([](tcp::socket& s, int connection, int) {
    if (connection == 0) {
      send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n");
      std::this_thread::sleep_for(20ms);  // the rest in another segment
      send(s, "3\r\n:1}\r\n0\r\n\r\n");
      return true;
    }
    send(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"until\":\"close\"}");
    return false;
  });
  connect_to(owner.port());
  auto chunked = get("/chunked");
  ASSERT_EQ(chunked.outcome, fetch_result::kind::response) << chunked.detail;
  EXPECT_EQ(chunked.body, "{\"a\":1}");
  // Two at once: one goes on the pooled connection, the other opens a second one, whose answer
  // has no length and ends with the close.
  std::promise<fetch_result> p1, p2;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  client_->get("/x", deadline, [&](fetch_result r) { p1.set_value(std::move(r)); });
  client_->get("/y", deadline, [&](fetch_result r) { p2.set_value(std::move(r)); });
  auto r1 = p1.get_future().get();
  auto r2 = p2.get_future().get();
  EXPECT_EQ(r1.outcome, fetch_result::kind::response) << r1.detail;
  EXPECT_EQ(r2.outcome, fetch_result::kind::response) << r2.detail;
  EXPECT_TRUE(r1.body == "{\"until\":\"close\"}" || r2.body == "{\"until\":\"close\"}") << r1.body << " / " << r2.body;
}

TEST_F(HttpOwnerClientTest, TheDeadlineEndsARequestAndTheConnectionIsNotReused) {
  std::atomic<bool> hang{true};
  scripted_owner owner([&hang](tcp::socket& s, int, int) {
    if (hang) {
      std::this_thread::sleep_for(1s);  // never answers in time; the client closes first
      return false;
    }
    send(s, ok("{\"late\":false}"));
    return true;
  });
  connect_to(owner.port());
  const auto start = std::chrono::steady_clock::now();
  auto r = get("/slow", 200ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.outcome, fetch_result::kind::timeout);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 900ms) << "the deadline, not the owner, ends the request";
  hang = false;
  auto next = get("/next");
  ASSERT_EQ(next.outcome, fetch_result::kind::response) << next.detail;
  EXPECT_EQ(next.body, "{\"late\":false}");
  EXPECT_EQ(owner.connections(), 2);
}

TEST_F(HttpOwnerClientTest, RefusedAndMalformedAreReportedAsSuch) {
  std::uint16_t closed_port = 0;
  {
    net::io_context ioc;
    tcp::acceptor a(ioc, {net::ip::make_address("127.0.0.1"), 0});
    closed_port = a.local_endpoint().port();
  }
  connect_to(closed_port);
  auto refused = get("/a");
  EXPECT_EQ(refused.outcome, fetch_result::kind::connect_error);
  EXPECT_NE(refused.detail.find("connect 127.0.0.1:"), std::string::npos) << refused.detail;

  scripted_owner owner([](tcp::socket& s, int, int) {
    send(s, "SMTP ready\r\n\r\n");
    return true;
  });
  connect_to(owner.port());
  auto malformed = get("/b");
  EXPECT_EQ(malformed.outcome, fetch_result::kind::io_error);
  EXPECT_NE(malformed.detail.find("read"), std::string::npos) << malformed.detail;
}

TEST_F(HttpOwnerClientTest, ConcurrentRequestsEachGetTheirOwnAnswer) {
  scripted_owner owner([](tcp::socket& s, int connection, int request) {
    send(s, ok("{\"c\":" + std::to_string(connection) + ",\"r\":" + std::to_string(request) + "}"));
    return true;
  });
  connect_to(owner.port());
  constexpr int kCalls = 40;
  std::vector<std::promise<fetch_result>> promises(kCalls);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (int round = 0; round < 2; ++round) {
    promises = std::vector<std::promise<fetch_result>>(kCalls);
    for (int i = 0; i < kCalls; ++i)
      client_->get("/k" + std::to_string(i), deadline,
                   [&promises, i](fetch_result r) { promises[i].set_value(std::move(r)); });
    for (auto& p : promises) {
      auto r = p.get_future().get();
      ASSERT_EQ(r.outcome, fetch_result::kind::response) << r.detail;
      EXPECT_EQ(r.status, 200u);
    }
  }
  EXPECT_EQ(owner.requests(), 2 * kCalls);
  EXPECT_LE(owner.connections(), kCalls) << "the second round reuses the first round's connections";
}

}  // namespace
}  // namespace datashare::sidecar::proxy
