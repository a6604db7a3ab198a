// The local API end to end in one process: Beast server on 127.0.0.1 (port 0), router, a
// publisher and a replica over the in-memory broker. No outside server is involved.
#include "sidecar/api/router.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "sidecar/kafka/fake_broker.h"
#include "sidecar/replica/layout.h"
#include "sidecar/store/memory_kv.h"

namespace datashare::sidecar::api {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

config::product_schema products() {
  config::product_schema p;
  p.name = "products";
  p.namespace_name = "catalog";
  p.key = "id";
  p.fields = {{"id", config::field_type::string, false},
              {"name", config::field_type::string, false},
              {"price", config::field_type::number, false},
              {"supplierEmail", config::field_type::string, true}};
  return p;
}

// A keep-alive client for one connection.
class client {
 public:
  explicit client(std::uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }

  bhttp::response<bhttp::string_body> call(bhttp::verb method, const std::string& target,
                                           const std::string& body = "") {
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "localhost");
    req.keep_alive(true);
    if (!body.empty()) {
      req.body() = body;
      req.set(bhttp::field::content_type, "application/json");
    }
    req.prepare_payload();
    bhttp::write(socket_, req);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket_, buffer_, res);
    return res;
  }

  // Sends raw bytes and returns everything the server answers until it closes the connection.
  std::string raw(const std::string& bytes) {
    net::write(socket_, net::buffer(bytes));
    std::string out;
    beast::error_code ec;
    char buf[4096];
    for (int i = 0; i < 100; ++i) {
      std::size_t n = socket_.read_some(net::buffer(buf), ec);
      out.append(buf, n);
      if (ec) break;
    }
    return out;
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// An owner answering at once, in the caller's thread, with a fixed price.
class inline_owner : public proxy::owner_client {
 public:
  void get(const std::string& target, time_point, callback done) override {
    if (target == "/prices/missing") {
      done({.outcome = proxy::fetch_result::kind::response, .status = 404});
    } else {
      done({.outcome = proxy::fetch_result::kind::response, .status = 200, .body = R"({"sku":"a","amount":3})"});
    }
  }
};

class router_test : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_.create_topic("catalog.products.v1", 2);
    config::publish_spec ps;
    ps.product = products();
    ps.topic = "catalog.products.v1";
    publisher_ = std::make_unique<publisher::publisher>(ps, std::make_unique<store::memory_kv>(), *factory_,
                                                        metrics_.publisher("products"));
    std::string error;
    ASSERT_FALSE(publisher_->start(error)) << error;

    config::subscribe_spec ss;
    ss.policy = "orders-products";
    ss.product = products();
    ss.topic = "catalog.products.v1";
    ss.group = "g";
    ss.fields = {"id", "name"};
    replica::replica_options o;
    o.poll_timeout = std::chrono::milliseconds(0);
    replica_ = std::make_unique<replica::replica>(ss, std::make_unique<store::memory_kv>(), *factory_,
                                                  metrics_.replica("products", "orders-products"), o);
    ASSERT_FALSE(replica_->start(error)) << error;
    config::subscribe_spec prices;
    prices.policy = "orders-prices";
    prices.product.name = "prices";
    prices.product.key = "sku";
    prices.product.fields = {{"sku", config::field_type::string, false}, {"amount", config::field_type::number, false}};
    prices.mode = config::sharing_mode::sync;
    prices.sync_fields = {"amount"};
    prices.owner_read_path = "/prices/{key}";
    prices_ = std::make_unique<proxy::sync_proxy>(prices, prices.sync_fields, std::make_unique<inline_owner>(),
                                                  metrics_.sync("orders-prices"), proxy::proxy_env{});
    router_ = std::make_unique<router>(metrics_, std::vector<replica::replica*>{replica_.get()},
                                       std::vector<publisher::publisher*>{publisher_.get()},
                                       std::vector<proxy::sync_proxy*>{prices_.get()});
    http::limits l;
    l.body_bytes = 4096;
    server_ = std::make_unique<http::server>(1, l);
    ASSERT_FALSE(server_->listen(
        "127.0.0.1", 0, [this](const http::request& q, const http::responder& r) { router_->handle_data(q, r); },
        port_));
    ASSERT_FALSE(server_->listen(
        "127.0.0.1", 0, [this](const http::request& q, const http::responder& r) { router_->handle_admin(q, r); },
        admin_port_));
    server_->start();
  }
  void TearDown() override {
    publisher_->stop();
    server_->stop();
  }

  // Runs the replica until the publisher's outbox is drained and everything is applied.
  void replicate() {
    for (int i = 0; i < 500; ++i) {
      replica_->run_once();
      if (publisher_->depth() == 0 && replica_->status().lag_events == 0) {
        replica_->run_once();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL() << "did not replicate";
  }

  kafka::fake_broker broker_;
  std::unique_ptr<kafka::client_factory> factory_ = broker_.factory();
  metrics::registry metrics_;
  std::unique_ptr<publisher::publisher> publisher_;
  std::unique_ptr<replica::replica> replica_;
  std::unique_ptr<proxy::sync_proxy> prices_;
  std::unique_ptr<router> router_;
  std::unique_ptr<http::server> server_;
  std::uint16_t port_ = 0, admin_port_ = 0;
};

TEST_F(router_test, PublishThenReadOverOneKeepAliveConnection) {
  client c(port_);
  auto put = c.call(bhttp::verb::put, "/v1/data/products/sku%2F1", R"({"name":"Lamp","price":3,"supplierEmail":"x"})");
  ASSERT_EQ(put.result_int(), 202u) << put.body();
  std::string version(put["Datashare-Version"]);
  EXPECT_FALSE(version.empty());
  EXPECT_EQ(c.call(bhttp::verb::put, "/v1/data/products/sku-2", R"({"name":"Desk"})").result_int(), 202u);
  EXPECT_EQ(c.call(bhttp::verb::put, "/v1/data/products/sku-3", R"({"name":"Gone"})").result_int(), 202u);
  EXPECT_EQ(c.call(bhttp::verb::delete_, "/v1/data/products/sku-3").result_int(), 202u);
  replicate();

  auto get = c.call(bhttp::verb::get, "/v1/data/products/sku%2F1");
  ASSERT_EQ(get.result_int(), 200u) << get.body();
  EXPECT_EQ(nlohmann::json::parse(get.body()), nlohmann::json::parse(R"({"id":"sku/1","name":"Lamp"})"));
  EXPECT_EQ(std::string(get["Datashare-Version"]), version);
  // Caught up when the replica last looked (this test drives its loop by hand, so it ages).
  EXPECT_LE(std::stoll(std::string(get["Datashare-Staleness-Ms"])), 1000);

  auto missing = c.call(bhttp::verb::get, "/v1/data/products/sku-3");
  EXPECT_EQ(missing.result_int(), 404u);
  EXPECT_FALSE(std::string(missing["Datashare-Staleness-Ms"]).empty());

  auto batch = c.call(bhttp::verb::get, "/v1/data/products?keys=sku%2F1,sku-2,nope");
  ASSERT_EQ(batch.result_int(), 200u);
  auto b = nlohmann::json::parse(batch.body());
  ASSERT_EQ(b["items"].size(), 2u);
  EXPECT_EQ(b["items"][0]["key"], "sku/1");
  EXPECT_EQ(b["items"][1]["value"]["name"], "Desk");
  EXPECT_EQ(b["missing"], nlohmann::json::parse(R"(["nope"])"));

  auto page1 = nlohmann::json::parse(c.call(bhttp::verb::get, "/v1/data/products?limit=1").body());
  ASSERT_EQ(page1["items"].size(), 1u);
  EXPECT_EQ(page1["next"], "sku-2");
  auto page2 = nlohmann::json::parse(c.call(bhttp::verb::get, "/v1/data/products?limit=1&after=sku-2").body());
  ASSERT_EQ(page2["items"].size(), 1u);
  EXPECT_EQ(page2["items"][0]["key"], "sku/1");
  EXPECT_FALSE(page2.contains("next"));
}

TEST_F(router_test, SyncReadsGoThroughTheOwnerAndSaySo) {
  client c(port_);
  auto res = c.call(bhttp::verb::get, "/v1/data/prices/a");
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  EXPECT_EQ(res.body(), R"({"amount":3})");
  EXPECT_EQ(res["Datashare-Sources"], R"(owner;fields="amount";staleness-ms=0)");
  res = c.call(bhttp::verb::get, "/v1/data/prices/a");
  EXPECT_EQ(res["Datashare-Sources"].substr(0, 6), "cache;");
}

TEST_F(router_test, BadRequestsGetClearErrors) {
  client c(port_);
  struct bad {
    bhttp::verb method;
    std::string target;
    std::string body;
    unsigned status;
  };
  for (const auto& x : std::vector<bad>{
           {bhttp::verb::get, "/v1/data/products/%zz", "", 400},
           {bhttp::verb::get, "/v1/data/products/abc%", "", 400},
           {bhttp::verb::get, "/v1/data/products?limit=0", "", 400},
           {bhttp::verb::get, "/v1/data/products?limit=abc", "", 400},
           {bhttp::verb::get, "/v1/data/products?keys=", "", 400},
           {bhttp::verb::get, "/v1/data/products?keys=a,,b", "", 400},
           {bhttp::verb::get, "/v1/data/products?keys=a,", "", 400},
           {bhttp::verb::get, "/v1/data/", "", 400},
           {bhttp::verb::get, "/v1/data/products/", "", 400},
           {bhttp::verb::get, "/v1/data/products?key=a", "", 400},
           {bhttp::verb::get, "/v1/data/products?limit=5&sort=name", "", 400},
           {bhttp::verb::get, "/v1/data/unknown/a", "", 404},
           {bhttp::verb::get, "/v1/data/prices?keys=a", "", 501},
           {bhttp::verb::get, "/v1/data/prices/missing", "", 404},
           {bhttp::verb::get, "/v1/data/prices/%zz", "", 400},
           {bhttp::verb::get, "/nowhere", "", 404},
           {bhttp::verb::post, "/v1/data/products/a", "{}", 405},
           {bhttp::verb::put, "/v1/data/products/a", "not json", 400},
           {bhttp::verb::put, "/v1/data/products/a", R"({"ratng":1})", 400},
           {bhttp::verb::put, "/v1/data/products/a", R"({"price":"x"})", 400},
           {bhttp::verb::put, "/v1/data/products/%ff", R"({})", 400},
           {bhttp::verb::put, "/v1/data/products/", R"({})", 400},
           {bhttp::verb::put, "/v1/data/unknown/a", R"({})", 404},
       }) {
    auto r = c.call(x.method, x.target, x.body);
    EXPECT_EQ(r.result_int(), x.status) << x.target << " " << r.body();
    EXPECT_TRUE(nlohmann::json::accept(r.body())) << r.body();
  }
  std::string many = "/v1/data/products?keys=k0";
  for (int i = 1; i <= 1000; ++i) many += ",k" + std::to_string(i);
  EXPECT_EQ(c.call(bhttp::verb::get, many).result_int(), 400u);
  // The same connection still works after all of that.
  EXPECT_EQ(c.call(bhttp::verb::get, "/healthz").result_int(), 200u);
}

// A full outbox answers over HTTP with 503 and Retry-After, stores nothing more and keeps what
// it holds; once the broker is back and the outbox drains, the same write is accepted.
TEST_F(router_test, AFullOutboxIsA503WithRetryAfterAndKeepsWhatItHolds) {
  kafka::fake_broker down;
  down.create_topic("catalog.products.v1", 1);
  auto factory = down.factory();
  down.set_down(true);
  config::publish_spec ps;
  ps.product = products();
  ps.topic = "catalog.products.v1";
  ps.outbox.max_entries = 2;
  metrics::registry m;
  publisher::publisher pub(ps, std::make_unique<store::memory_kv>(), *factory, m.publisher("products"));
  std::string error;
  ASSERT_FALSE(pub.start(error)) << error;
  router rt(m, {}, {&pub}, {});
  http::server srv(1);
  std::uint16_t port = 0;
  ASSERT_FALSE(srv.listen(
      "127.0.0.1", 0, [&rt](const http::request& q, const http::responder& r) { rt.handle_data(q, r); }, port));
  srv.start();
  client c(port);
  EXPECT_EQ(c.call(bhttp::verb::put, "/v1/data/products/a", R"({"name":"A"})").result_int(), 202u);
  EXPECT_EQ(c.call(bhttp::verb::put, "/v1/data/products/b", R"({"name":"B"})").result_int(), 202u);
  auto full = c.call(bhttp::verb::put, "/v1/data/products/c", R"({"name":"C"})");
  EXPECT_EQ(full.result_int(), 503u) << full.body();
  EXPECT_EQ(full[bhttp::field::retry_after], "1");
  EXPECT_TRUE(nlohmann::json::accept(full.body())) << full.body();
  EXPECT_EQ(pub.depth(), 2u);

  down.set_down(false);
  for (int i = 0; i < 400 && pub.depth() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(pub.depth(), 0u);
  EXPECT_EQ(c.call(bhttp::verb::put, "/v1/data/products/c", R"({"name":"C"})").result_int(), 202u);
  for (int i = 0; i < 400 && pub.depth() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::vector<std::string> keys;
  for (const auto& e : down.read_all("catalog.products.v1")) keys.push_back(e.key.value_or(""));
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c"}));
  pub.stop();
  srv.stop();
}

TEST_F(router_test, MalformedHttpIsA400AndTheServerGoesOn) {
  for (const std::string& bytes :
       {std::string("GARBAGE\r\n\r\n"), std::string("GET /v1/data/products/a HTTP/9.9\r\n\r\n"),
        std::string("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        std::string("PUT /v1/data/products/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"),
        std::string("GET /healthz HTTP/1.1\r\nX: ") + std::string(20000, 'a') + "\r\n\r\n",
        std::string("GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\n\r\nzz\r\n")}) {
    client c(port_);
    std::string answer = c.raw(bytes);
    EXPECT_TRUE(answer.rfind("HTTP/1.1 4", 0) == 0) << bytes.substr(0, 60) << " → " << answer.substr(0, 80);
  }
  client c(port_);
  EXPECT_EQ(c.call(bhttp::verb::get, "/healthz").result_int(), 200u);
}

TEST_F(router_test, ProbesAndMetrics) {
  client admin(admin_port_);
  EXPECT_EQ(admin.call(bhttp::verb::get, "/healthz").result_int(), 200u);
  EXPECT_EQ(admin.call(bhttp::verb::get, "/v1/data/products/a").result_int(), 404u);  // not on the admin port
  client c(port_);
  ASSERT_EQ(c.call(bhttp::verb::put, "/v1/data/products/a", "{}").result_int(), 202u);
  replicate();
  auto ready = admin.call(bhttp::verb::get, "/readyz");
  EXPECT_EQ(ready.result_int(), 200u) << ready.body();
  auto body = nlohmann::json::parse(ready.body());
  EXPECT_EQ(body["replicas"][0]["appliedTotal"], 1);
  EXPECT_EQ(body["replicas"][0]["readIndex"], "none");  // this test's store has none
  auto m = admin.call(bhttp::verb::get, "/metrics");
  EXPECT_EQ(m.result_int(), 200u);
  for (const char* name :
       {"datashare_replica_lag_events{", "datashare_replica_lag_seconds{", "datashare_replica_apply_total{",
        "datashare_replica_skipped_stale_total{", "datashare_replica_dlq_total{",
        "datashare_propagation_seconds_bucket{", "datashare_publisher_outbox_depth{", "datashare_publish_total{",
        "policy=\"orders-products\"", "result=\"accepted\""}) {
    EXPECT_NE(m.body().find(name), std::string::npos) << name;
  }
}

TEST_F(router_test, NotReadyBeforeCatchingUp) {
  client c(port_);
  ASSERT_EQ(c.call(bhttp::verb::put, "/v1/data/products/a", "{}").result_int(), 202u);
  for (int i = 0; i < 200 && publisher_->depth() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // A new replica that has not polled yet is behind the watermark it saw at start.
  config::subscribe_spec ss = replica_->spec();
  replica::replica fresh(ss, std::make_unique<store::memory_kv>(), *factory_, metrics_.replica("products", "fresh"));
  std::string error;
  ASSERT_FALSE(fresh.start(error));
  router r(metrics_, {&fresh}, {});
  EXPECT_FALSE(r.ready());
}

// A gateway copy's store holding key "k" at version 1 ("old"), a router to read it through, and the
// read's answer with its Datashare-Staleness-Ms header.
class CopyReadTest : public ::testing::Test {
 protected:
  void SetUp() override { put(R"({"id":"k","name":"old"})", 1); }
  void put(const std::string& value, std::uint64_t version) {
    store::write_batch b;
    b.put(replica::data_key("k"), replica::encode_record(version, 0, false, value));
    ASSERT_FALSE(copy.write(b, true));
  }
  // The answer to GET target, and its staleness header ("" when absent).
  std::pair<http::response, std::string> get(const std::string& target) {
    http::request q{boost::beast::http::verb::get, target, 11};
    http::response got;
    r.handle_data(q, http::responder([&got](http::response a) { got = std::move(a); }));
    std::string staleness;
    for (const auto& [name, value] : got.headers)
      if (name == "Datashare-Staleness-Ms") staleness = value;
    return {std::move(got), staleness};
  }
  metrics::registry m;
  router r{m, {}, {}};
  store::memory_kv copy;
};

// A gateway copy's read asks whether a transaction holds the key *before* it reads the value: a
// commit that lands between the two then shows its new value, never the old one said current
// (staleness 0). Here the commit lands (its value written, its key freed) at the moment of the
// question; read first, the old value was served with staleness 0 (until 2026-12-04).
TEST_F(CopyReadTest, AKeyFreedDuringTheReadIsNeverServedOldAsCurrent) {
  bool committed = false;
  r.add_copy("products", &copy, [&](const std::string&) -> std::int64_t {
    if (!committed) {
      committed = true;
      put(R"({"id":"k","name":"new"})", 2);  // the commit's value in the store, its key freed
    }
    return 0;
  });
  auto [got, staleness] = get("/v1/data/products/k");
  ASSERT_EQ(got.status, 200u) << got.body;
  EXPECT_TRUE(got.body == R"({"id":"k","name":"new"})" || staleness != "0")
      << got.body << " served with staleness " << staleness;
}

// A scan learns its keys only by reading them, so it asks "held?" after: a commit that lands in
// between (its value written, its key freed) would leave the page's old value said current. The
// count of keys freed changed during the scan: the page says it may be stale (at least 1 ms).
TEST_F(CopyReadTest, AScanDuringWhichAKeyWasFreedIsNeverSaidCurrent) {
  std::uint64_t released = 0;
  r.add_copy(
      "products", &copy,
      [&](const std::string&) -> std::int64_t {
        if (released == 0) {
          put(R"({"id":"k","name":"new"})", 2);  // the commit lands after the page was read
          ++released;
        }
        return 0;
      },
      [&] { return released; });
  auto [got, staleness] = get("/v1/data/products?limit=10");
  ASSERT_EQ(got.status, 200u) << got.body;
  EXPECT_TRUE(got.body.find("new") != std::string::npos || staleness != "0")
      << got.body << " served with staleness " << staleness;
}

TEST(PercentDecodeTest, Cases) {
  EXPECT_EQ(percent_decode("a%2Fb%20c+d"), "a/b c+d");
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_FALSE(percent_decode("%"));
  EXPECT_FALSE(percent_decode("%4"));
  EXPECT_FALSE(percent_decode("%g0"));
}

}  // namespace
}  // namespace datashare::sidecar::api
