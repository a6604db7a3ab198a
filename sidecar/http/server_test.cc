#include "sidecar/http/server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <ctime>
#include <map>
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
          if (target == "/drop") {
            respond.close();  // a crashed peer: no answer, the connection goes
            return;
          }
          if (target == "/big") {
            respond({200, big_body(), "application/octet-stream", {}});
            return;
          }
          response r{200, R"({"ok":true})", "application/json", {{"Datashare-Version", "7"}}};
          if (target == "/split") r.headers.emplace_back("X-Split", "a\r\nInjected: yes");
          if (target == "/badname") r.headers.emplace_back("Bad Name", "x");
          if (target.starts_with("/echo/")) r.body = target;
          if (target == "/echo-body") r.body = req.body();
          respond(std::move(r));
        },
        port_));
    server_->start();
  }

  // The server's threads stop before the members their handler touches are gone.
  void TearDown() override { server_.reset(); }

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

  // 4 MiB that no socket buffer on loopback takes at once: the answer must wait for the reader.
  static const std::string& big_body() {
    static const std::string body = [] {
      std::string b(4 << 20, '\0');
      for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<char>('a' + i % 26);
      return b;
    }();
    return body;
  }

  static tcp::socket connect(net::io_context& ioc, std::uint16_t port) {
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    s.set_option(tcp::no_delay(true));
    return s;
  }

  // Everything the server sends until it closes, or what came within `limit` (then `closed` is false).
  static std::string read_until_close(tcp::socket& s, std::chrono::seconds limit, bool& closed) {
    std::string out;
    closed = false;
    timeval tv{static_cast<time_t>(limit.count()), 0};
    setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      closed = n == 0 || errno == ECONNRESET;
      return out;
    }
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

TEST_P(http_server_test, PipelinedRequestsAreAnsweredInOrder) {
  // Twenty requests in one write, some answered from another thread: twenty answers, in the
  // order asked, on the one connection.
  std::string raw;
  for (int i = 0; i < 20; ++i) {
    std::string target = i % 4 == 3 ? "/later" : "/echo/" + std::to_string(i);
    raw += "GET " + target + " HTTP/1.1\r\nHost: a\r\n" + (i == 19 ? "Connection: close\r\n" : "") + "\r\n";
  }
  auto out = exchange_until_close(raw);
  std::size_t at = 0;
  for (int i = 0; i < 20; ++i) {
    std::string want = i % 4 == 3 ? R"({"later":true})" : "/echo/" + std::to_string(i);
    auto found = out.find("\r\n\r\n" + want, at);
    ASSERT_NE(found, std::string::npos) << "answer " << i << " missing or out of order in:\n" << out;
    at = found + 4 + want.size();
  }
  EXPECT_EQ(at, out.size()) << out;
}

TEST_P(http_server_test, ARequestTrickledByteByByteIsAnswered) {
  net::io_context ioc;
  auto s = connect(ioc, port_);
  std::string raw = "POST /echo-body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
  for (char c : raw) {
    net::write(s, net::buffer(&c, 1));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  bool closed = false;
  auto out = read_until_close(s, std::chrono::seconds(10), closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << out;
  EXPECT_EQ(out.substr(out.size() - 5), "hello") << out;
}

TEST_P(http_server_test, BadRequestsGetAnErrorAndTheConnectionCloses) {
  // Each answered with its status and a JSON reason, then closed: the stream cannot be trusted.
  auto out = exchange_until_close("GARBAGE\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0U) << out;
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find(R"({"error":"malformed HTTP request: )"), std::string::npos) << out;
  out = exchange_until_close("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(20 << 10, 'x') + "\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 431 ", 0), 0U) << out.substr(0, 200);
  out = exchange_until_close("POST /echo-body HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 413 ", 0), 0U) << out;
  // A request the peer cuts short (its half of the connection closed mid-request).
  net::io_context ioc;
  auto s = connect(ioc, port_);
  net::write(s, net::buffer(std::string("GET /x HTTP/1.1\r\nHost: a\r\nX-Half")));
  s.shutdown(tcp::socket::shutdown_send);
  bool closed = false;
  out = read_until_close(s, std::chrono::seconds(10), closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(out.rfind("HTTP/1.1 400 ", 0), 0U) << out;
  // And the server goes on answering.
  out = exchange_until_close("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << out;
}

TEST_P(http_server_test, ASlowReaderGetsTheWholeAnswer) {
  // The answer is far larger than the socket buffers: the server waits until the reader, who
  // starts only after a pause, takes it all; a keep-alive request after it is answered too.
  net::io_context ioc;
  auto s = connect(ioc, port_);
  s.set_option(net::socket_base::receive_buffer_size(65536));
  net::write(s, net::buffer(std::string("GET /big HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n"
                                        "Connection: close\r\n\r\n")));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  bool closed = false;
  auto out = read_until_close(s, std::chrono::seconds(20), closed);
  EXPECT_TRUE(closed);
  auto head_end = out.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_NE(out.substr(0, head_end).find("Content-Length: " + std::to_string(big_body().size())), std::string::npos);
  ASSERT_GE(out.size(), head_end + 4 + big_body().size());
  EXPECT_TRUE(out.compare(head_end + 4, big_body().size(), big_body()) == 0) << "the body arrived altered";
  auto rest = out.substr(head_end + 4 + big_body().size());
  EXPECT_EQ(rest.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << rest.substr(0, 200);
  EXPECT_EQ(rest.substr(rest.size() - 11), R"({"ok":true})");
}

TEST_P(http_server_test, AHandlerCanDropTheConnection) {
  auto out = exchange_until_close("GET /drop HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(out, "");
}

TEST_P(http_server_test, AnIdleConnectionIsClosedAfterTheIdleTimeout) {
  limits lim;
  lim.busy_poll = std::chrono::microseconds(GetParam());
  lim.idle_timeout = std::chrono::seconds(1);
  server idle(1, lim);
  std::uint16_t port = 0;
  ASSERT_FALSE(idle.listen(
      "127.0.0.1", 0,
      [](const request&, const responder& respond) {
        respond({200, "{}", "application/json", {}});
      },
      port));
  idle.start();
  net::io_context ioc;
  auto s = connect(ioc, port);
  // One answered request, then silence: the server closes the connection on its own.
  net::write(s, net::buffer(std::string("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")));
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  auto out = read_until_close(s, std::chrono::seconds(30), closed);
  EXPECT_TRUE(closed) << "still open after 30 s";
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(900));
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << out;
}

TEST(http_server_listeners, EachListenerSpreadsItsConnectionsOverTheThreads) {
  // A listener's connections alternate between the I/O threads whatever another listener took:
  // the gateway's two connections to a participant must not share one thread because a probe
  // connected in between.
  server srv(2);
  std::mutex mu;
  std::map<std::string, std::set<std::thread::id>> seen;
  auto handler_for = [&](const std::string& name) {
    return [&, name](const request&, const responder& respond) {
      {
        std::lock_guard<std::mutex> l(mu);
        seen[name].insert(std::this_thread::get_id());
      }
      respond({200, "{}", "application/json", {}});
    };
  };
  std::uint16_t a = 0, b = 0;
  ASSERT_FALSE(srv.listen("127.0.0.1", 0, handler_for("a"), a));
  ASSERT_FALSE(srv.listen("127.0.0.1", 0, handler_for("b"), b));
  srv.start();
  auto get = [](std::uint16_t port) {
    net::io_context ioc;
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    net::write(s, net::buffer(std::string("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")));
    std::string out;
    boost::system::error_code ec;
    net::read(s, net::dynamic_buffer(out), ec);
    return out;
  };
  EXPECT_NE(get(a).find("200 OK"), std::string::npos);
  EXPECT_NE(get(b).find("200 OK"), std::string::npos);
  EXPECT_NE(get(b).find("200 OK"), std::string::npos);
  srv.stop();
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(seen["b"].size(), 2U) << "both of b's connections ran on one thread";
}

INSTANTIATE_TEST_SUITE_P(Sleeping, http_server_test, ::testing::Values(0));
INSTANTIATE_TEST_SUITE_P(BusyPolling, http_server_test, ::testing::Values(500));

}  // namespace
}  // namespace datashare::sidecar::http
