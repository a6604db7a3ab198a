#include "sidecar/http/async_client.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <future>
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

// The client's own io_context on two threads, as the gateway runs it.
class async_client_test : public ::testing::Test {
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
          if (req.target() == "/drop") {
            respond.close();
            return;
          }
          response r;
          r.status = req.target() == "/missing" ? 404 : 200;
          r.body = std::string(bhttp::to_string(req.method())) + " " + std::string(req.target()) + " " + req.body();
          respond(r);
        },
        port_));
    server_.start();
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }
  void TearDown() override {
    {
      std::lock_guard lock(mu_);
      for (auto& r : parked_) r(response{});
    }
    server_.stop();
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
  }
  struct result {
    std::error_code ec;
    client_reply reply;
  };
  result call(async_client& c, bhttp::verb m, const std::string& target, const std::string& body,
              std::chrono::milliseconds timeout) {
    std::promise<result> p;
    c.call(m, target, body, in(timeout), [&p](std::error_code ec, client_reply r) { p.set_value({ec, std::move(r)}); });
    return p.get_future().get();
  }

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{ioc_.get_executor()};
  std::vector<std::thread> threads_;
  server server_{2};
  std::uint16_t port_ = 0;
  std::mutex mu_;
  std::vector<responder> parked_;
};

TEST_F(async_client_test, CallsManyAtOnceAndReusesConnections) {
  async_client c(ioc_, {"127.0.0.1", std::to_string(port_)});
  auto r = call(c, bhttp::verb::post, "/a", R"({"x":1})", 2s);
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.reply.status, 200u);
  EXPECT_EQ(r.reply.body, R"(POST /a {"x":1})");
  EXPECT_EQ(call(c, bhttp::verb::get, "/missing", "", 2s).reply.status, 404u);
  // 300 calls in flight at once from one thread: every one answered, with its own body.
  constexpr int kCalls = 300;
  std::mutex mu;
  int ok = 0, done = 0;
  std::promise<void> all;
  for (int i = 0; i < kCalls; ++i) {
    std::string target = "/p" + std::to_string(i);
    c.call(bhttp::verb::post, target, "b", in(10s), [&, target](std::error_code ec, client_reply rr) {
      std::lock_guard lock(mu);
      if (!ec && rr.status == 200 && rr.body == "POST " + target + " b") ++ok;
      if (++done == kCalls) all.set_value();
    });
  }
  all.get_future().wait();
  EXPECT_EQ(ok, kCalls);
  // Serial calls afterwards reuse the pooled connections.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(call(c, bhttp::verb::get, "/again", "", 2s).reply.status, 200u);
}

TEST_F(async_client_test, DeadlineBoundsACallThatIsNeverAnswered) {
  async_client c(ioc_, {"127.0.0.1", std::to_string(port_)});
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(call(c, bhttp::verb::get, "/never", "", 200ms).ec, std::errc::timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(call(c, bhttp::verb::get, "/a", "", 2s).reply.status, 200u);
}

TEST_F(async_client_test, AClosedConnectionIsAnErrorAndTheNextCallWorks) {
  async_client c(ioc_, {"127.0.0.1", std::to_string(port_)});
  EXPECT_TRUE(call(c, bhttp::verb::get, "/drop", "", 2s).ec);
  EXPECT_EQ(call(c, bhttp::verb::get, "/a", "", 2s).reply.status, 200u);
}

TEST_F(async_client_test, RefusedConnectionIsAnError) {
  std::uint16_t port = 0;
  {
    server s(1);
    ASSERT_FALSE(s.listen(
        "127.0.0.1", 0, [](const request&, const responder& r) { r(response{}); }, port));
  }
  async_client c(ioc_, {"127.0.0.1", std::to_string(port)});
  EXPECT_EQ(call(c, bhttp::verb::get, "/", "", 2s).ec, std::errc::connection_refused);
}

}  // namespace
}  // namespace datashare::sidecar::http
