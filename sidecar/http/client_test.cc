#include "sidecar/http/client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "sidecar/http/server.h"

namespace datashare::sidecar::http {
namespace {

using namespace std::chrono_literals;
namespace bhttp = boost::beast::http;

auto in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

TEST(HttpClientTest, ParsesOrigins) {
  auto o = parse_origin("http://order-service.orders:8091");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->host, "order-service.orders");
  EXPECT_EQ(o->port, "8091");
  EXPECT_EQ(parse_origin("http://gw/")->port, "80");
  EXPECT_EQ(parse_origin("http://[::1]:9")->host, "::1");
  for (const char* bad :
       {"https://gw:1", "gw:1", "http://", "http://gw:1/x", "http://gw:0", "http://gw:99999", "http://gw:x"}) {
    EXPECT_FALSE(parse_origin(bad)) << bad;
  }
}

class http_client_server_test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(server_.listen(
        "127.0.0.1", 0,
        [this](const request& req, const responder& respond) {
          if (req.target() == "/never") {
            std::lock_guard lock(mu_);
            parked_.push_back(respond);  // answered at tear-down
            return;
          }
          response r;
          r.status = req.target() == "/missing" ? 404 : 200;
          r.body = std::string(bhttp::to_string(req.method())) + " " + std::string(req.target()) + " " + req.body();
          respond(r);
        },
        port_));
    server_.start();
  }
  void TearDown() override {
    {
      std::lock_guard lock(mu_);
      for (auto& r : parked_) r(response{});
    }
    server_.stop();
  }

  server server_{2};
  std::uint16_t port_ = 0;
  std::mutex mu_;
  std::vector<responder> parked_;
};

TEST_F(http_client_server_test, CallsAndReusesConnections) {
  client c({"127.0.0.1", std::to_string(port_)});
  client_reply r;
  ASSERT_FALSE(c.call(bhttp::verb::put, "/a", R"({"x":1})", in(2s), r));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, R"(PUT /a {"x":1})");
  ASSERT_FALSE(c.call(bhttp::verb::get, "/missing", "", in(2s), r));
  EXPECT_EQ(r.status, 404u);
  // Many threads at once, each on a connection of its own.
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        client_reply rr;
        if (!c.call(bhttp::verb::post, "/p", "", in(5s), rr) && rr.status == 200) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 400);
}

TEST_F(http_client_server_test, DeadlineBoundsACallThatIsNeverAnswered) {
  client c({"127.0.0.1", std::to_string(port_)});
  client_reply r;
  auto start = std::chrono::steady_clock::now();
  auto ec = c.call(bhttp::verb::get, "/never", "", in(200ms), r);
  EXPECT_EQ(ec, std::errc::timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // The client still works afterwards.
  ASSERT_FALSE(c.call(bhttp::verb::get, "/a", "", in(2s), r));
  EXPECT_EQ(r.status, 200u);
}

TEST(HttpClientTest, RefusedConnectionIsAnError) {
  std::uint16_t port = 0;
  {
    server s(1);
    ASSERT_FALSE(s.listen(
        "127.0.0.1", 0, [](const request&, const responder& r) { r(response{}); }, port));
  }
  client c({"127.0.0.1", std::to_string(port)});
  client_reply r;
  EXPECT_EQ(c.call(bhttp::verb::get, "/", "", in(2s), r), std::errc::connection_refused);
}

}  // namespace
}  // namespace datashare::sidecar::http
