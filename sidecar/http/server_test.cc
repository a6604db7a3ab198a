#include "sidecar/http/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace datashare::sidecar::http {
namespace {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

// Every test runs twice: with I/O threads that sleep as soon as they run out of work, and with
// threads that keep polling for a while first (limits::busy_poll).
class http_server_test : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    limits lim;
    lim.busy_poll = std::chrono::microseconds(GetParam());
    server_ = std::make_unique<server>(2, lim);
    ASSERT_FALSE(server_->listen(
        "127.0.0.1", 0,
        [this](const request& req, const responder& respond) {
          std::string target(req.target());
          {
            std::lock_guard<std::mutex> l(mu_);
            threads_.insert(std::this_thread::get_id());
          }
          if (target == "/later") {
            // Answered from a thread that is not an I/O thread, as the publisher does after its fsync.
            std::thread([respond] { respond({202, R"({"later":true})", "application/json", {}}); }).detach();
            return;
          }
          response r{200, R"({"ok":true})", "application/json", {{"Datashare-Version", "7"}}};
          if (target == "/split") r.headers.emplace_back("X-Split", "a\r\nInjected: yes");
          if (target == "/badname") r.headers.emplace_back("Bad Name", "x");
          respond(std::move(r));
        },
        port_));
    server_->start();
  }

  // Sends the raw request bytes and returns everything the server sends until it closes.
  std::string exchange_until_close(const std::string& raw) {
    net::io_context ioc;
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    net::write(s, net::buffer(raw));
    std::string out;
    boost::system::error_code ec;
    net::read(s, net::dynamic_buffer(out), ec);
    return out;
  }

  std::unique_ptr<server> server_;
  std::uint16_t port_ = 0;
  std::mutex mu_;
  std::set<std::thread::id> threads_;
};

TEST_P(http_server_test, AnswersInOneWellFormedMessage) {
  auto out = exchange_until_close("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDatashare-Version: 7\r\nContent-Length: 11\r\n"
            "Connection: close\r\n\r\n{\"ok\":true}");
}

TEST_P(http_server_test, HeadGetsTheHeadersWithoutTheBody) {
  auto out = exchange_until_close("HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_NE(out.find("Content-Length: 11\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n") << out;
}

TEST_P(http_server_test, HeaderValuesCannotSplitTheResponse) {
  auto out = exchange_until_close("GET /split HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_NE(out.find("\r\nX-Split: aInjected: yes\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("\r\nInjected:"), std::string::npos) << out;
  out = exchange_until_close("GET /badname HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(out.find("Bad Name"), std::string::npos) << out;
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << out;
}

TEST_P(http_server_test, Http10WithoutKeepAliveIsClosedAfterTheAnswer) {
  auto out = exchange_until_close("GET /x HTTP/1.0\r\n\r\n");
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.substr(out.size() - 11), "{\"ok\":true}");
}

TEST_P(http_server_test, KeepAliveConnectionsOnEveryThreadAnswerInOrder) {
  // Several connections, each with many requests on it, some answered from another thread: every
  // answer arrives, in order, and the connections are spread over both I/O threads.
  std::vector<std::thread> clients;
  clients.reserve(6);
  std::atomic<int> ok{0};
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([this, &ok] {
      net::io_context ioc;
      tcp::socket s(ioc);
      s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
      boost::beast::flat_buffer buf;
      for (int i = 0; i < 50; ++i) {
        bhttp::request<bhttp::empty_body> req(bhttp::verb::get, i % 5 == 0 ? "/later" : "/x", 11);
        req.set(bhttp::field::host, "a");
        bhttp::write(s, req);
        bhttp::response<bhttp::string_body> res;
        bhttp::read(s, buf, res);
        bool want_later = i % 5 == 0;
        if (res.result_int() == (want_later ? 202U : 200U) && res.keep_alive() &&
            res.body() == (want_later ? R"({"later":true})" : R"({"ok":true})"))
          ++ok;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 6 * 50);
  std::lock_guard<std::mutex> l(mu_);
  EXPECT_EQ(threads_.size(), 2U);
}

TEST_P(http_server_test, IdleThreadsSleep) {
  // After answering, a polling thread polls for at most its window and then sleeps like the
  // other: a second of idle costs the process next to no CPU (a thread that kept polling would
  // take a core, or its share of one on a loaded machine: far above the limit).
  auto out = exchange_until_close("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  ASSERT_NE(out.find("200 OK"), std::string::npos) << out;
  auto cpu = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto before = cpu();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_LT(cpu() - before, std::chrono::milliseconds(50));
  // And it still answers, and stops when told.
  out = exchange_until_close("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_NE(out.find("200 OK"), std::string::npos) << out;
  server_->stop();
}

INSTANTIATE_TEST_SUITE_P(Sleeping, http_server_test, ::testing::Values(0));
INSTANTIATE_TEST_SUITE_P(BusyPolling, http_server_test, ::testing::Values(500));

}  // namespace
}  // namespace datashare::sidecar::http
