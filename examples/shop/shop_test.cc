// The shop's services as request → response logic, with the sidecar replaced by functions.
#include "examples/shop/shop.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace datashare::shop {
namespace {

namespace bhttp = boost::beast::http;
using sidecar::http::client_reply;

sidecar::http::request make(bhttp::verb method, const std::string& target, const std::string& body = "") {
  sidecar::http::request req{method, target, 11};
  req.body() = body;
  req.prepare_payload();
  return req;
}

testing::path_template products_path() {
  std::string error;
  return *testing::path_template::parse("/products/{key}", error);
}

TEST(ProductFront, StoresThenPublishes) {
  testing::owner_service data(products_path(), 1);
  std::vector<std::pair<std::string, std::string>> published;
  product_front front(data, "id", [&](const std::string& key, const std::string& body) {
    published.emplace_back(key, body);
    return client_reply{.status = 200, .body = R"({"version":7})"};
  });
  auto r = front.answer(make(bhttp::verb::put, "/catalog/products/p%201", R"({"name":"Cup"})"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200U) << r->body;
  auto body = nlohmann::json::parse(r->body);
  EXPECT_EQ(body["stored"], nlohmann::json::parse(R"({"id":"p 1","name":"Cup"})"));
  EXPECT_EQ(body["published"]["version"], 7);
  ASSERT_EQ(published.size(), 1U);
  EXPECT_EQ(published[0].first, "p 1");
  EXPECT_EQ(nlohmann::json::parse(published[0].second)["id"], "p 1");     // the key field filled in
  EXPECT_FALSE(front.answer(make(bhttp::verb::get, "/products/p%201")));  // the data API's path
}

TEST(ProductFront, RefusesBadEditsAndReportsAnUnpublishedOne) {
  testing::owner_service data(products_path(), 1);
  unsigned sidecar_status = 503;
  int calls = 0;
  product_front front(data, "id", [&](const std::string&, const std::string&) {
    ++calls;
    return client_reply{.status = sidecar_status, .body = "outbox full"};
  });
  EXPECT_EQ(front.answer(make(bhttp::verb::put, "/catalog/products/p1", "[1]"))->status, 400U);
  EXPECT_EQ(front.answer(make(bhttp::verb::put, "/catalog/products/p1", R"({"id":"p2"})"))->status, 400U);
  EXPECT_EQ(front.answer(make(bhttp::verb::get, "/catalog/products/p1"))->status, 405U);
  EXPECT_EQ(front.answer(make(bhttp::verb::put, "/catalog/products/a/b", "{}"))->status, 404U);
  EXPECT_EQ(calls, 0);
  auto r = front.answer(make(bhttp::verb::put, "/catalog/products/p1", R"({"name":"Cup"})"));
  EXPECT_EQ(r->status, 503U);
  EXPECT_NE(r->body.find("stored but not published"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("outbox full"), std::string::npos) << r->body;
  sidecar_status = 0;
  r = front.answer(make(bhttp::verb::put, "/catalog/products/p1", R"({"name":"Cup"})"));
  EXPECT_NE(r->body.find("did not answer"), std::string::npos) << r->body;
}

TEST(OrderBook, ShowsWhatTheSidecarServesAtEachRead) {
  std::string name = "Espresso cup";
  unsigned status = 200;
  std::vector<std::string> reads;
  order_book book([&](const std::string& key) {
    reads.push_back(key);
    return client_reply{.status = status, .body = nlohmann::json{{"id", key}, {"name", name}}.dump()};
  });
  auto created = book.answer(make(bhttp::verb::post, "/orders", R"({"product":"p-1","quantity":2})"));
  ASSERT_EQ(created.status, 201U) << created.body;
  auto order = nlohmann::json::parse(created.body);
  EXPECT_EQ(order["id"], "o-1");
  EXPECT_EQ(order["quantity"], 2);
  EXPECT_EQ(order["productName"], "Espresso cup");
  name = "Espresso mug";
  auto shown = nlohmann::json::parse(book.answer(make(bhttp::verb::get, "/orders/o-1")).body);
  EXPECT_EQ(shown["productName"], "Espresso mug");
  EXPECT_EQ(shown["productData"]["id"], "p-1");
  status = 404;
  shown = nlohmann::json::parse(book.answer(make(bhttp::verb::get, "/orders/o-1")).body);
  EXPECT_TRUE(shown["productName"].is_null());
  EXPECT_NE(shown["productError"].get<std::string>().find("404"), std::string::npos);
  status = 200;
  book.answer(make(bhttp::verb::post, "/orders", R"({"product":"p-2"})"));
  auto list = nlohmann::json::parse(book.answer(make(bhttp::verb::get, "/orders")).body);
  ASSERT_EQ(list.size(), 2U);
  EXPECT_EQ(list[1]["quantity"], 1);
  EXPECT_EQ(reads, (std::vector<std::string>{"p-1", "p-1", "p-1", "p-2", "p-1", "p-2"}));
}

TEST(OrderBook, RefusesBadOrders) {
  order_book book([](const std::string&) { return client_reply{}; });
  for (const char* bad : {"", "[]", R"({"quantity":1})", R"({"product":""})", R"({"product":"p","quantity":0})",
                          R"({"product":"p","quantity":"2"})"}) {
    EXPECT_EQ(book.answer(make(bhttp::verb::post, "/orders", bad)).status, 400U) << bad;
  }
  EXPECT_EQ(book.answer(make(bhttp::verb::get, "/orders/o-9")).status, 404U);
  EXPECT_EQ(book.answer(make(bhttp::verb::delete_, "/orders/o-1")).status, 405U);
  auto unanswered = book.answer(make(bhttp::verb::post, "/orders", R"({"product":"p"})"));
  EXPECT_EQ(unanswered.status, 201U);
  EXPECT_NE(unanswered.body.find("did not answer"), std::string::npos) << unanswered.body;
}

}  // namespace
}  // namespace datashare::shop
