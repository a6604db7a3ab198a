#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>

#include "sidecar/event/cloudevents.h"
#include "sidecar/event/schema.h"

namespace datashare::sidecar::event {
namespace {

config::product_schema products() {
  config::product_schema p;
  p.name = "products";
  p.namespace_name = "catalog";
  p.key = "id";
  p.fields = {{"id", config::field_type::string, false},
              {"price", config::field_type::number, false},
              {"stock", config::field_type::integer, false},
              {"tags", config::field_type::array, false},
              {"secret", config::field_type::string, true}};
  return p;
}

TEST(CloudEventsTest, TimeRoundTripsWithMicroseconds) {
  std::int64_t t = 1'795'314'263'123'456;  // 2026-11-22T...
  std::string s = format_time(t);
  EXPECT_EQ(s.size(), 27u);
  EXPECT_EQ(s.back(), 'Z');
  EXPECT_EQ(parse_time(s), t);
  EXPECT_EQ(parse_time("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_time("1970-01-01T01:00:00.5+01:00"), 500'000);
  EXPECT_EQ(parse_time("2020-01-01T00:00:00.123456789Z"), parse_time("2020-01-01T00:00:00.123456Z"));
  for (const char* bad : {"", "2020-01-01", "2020-01-01T00:00:00", "2020-13-01T00:00:00Z", "2020-01-01T00:00:00.Z",
                          "2020-01-01T00:00:00Zjunk", "2020-01-01T00:00:00+0100", "yyyy-01-01T00:00:00Z"}) {
    EXPECT_FALSE(parse_time(bad)) << bad;
  }
}

// parse_time counts days itself: it must agree with the C library's timegm() on every calendar
// corner (leap years of each rule, the first and last day of each month, a leap second, a day
// past the month's end, which both carry into the next month).
TEST(CloudEventsTest, TimeAgreesWithTimegm) {
  int checked = 0;
  for (int year : {1970, 1999, 2000, 2001, 2023, 2024, 2026, 2100, 2400, 9999}) {
    for (int mon = 1; mon <= 12; ++mon) {
      for (int day : {1, 15, 28, 29, 30, 31}) {
        for (int sec : {0, 59, 60}) {
          char text[40];
          std::snprintf(text, sizeof text, "%04d-%02d-%02dT23:58:%02d.25-02:30", year, mon, day, sec);
          std::tm tm{};
          tm.tm_year = year - 1900;
          tm.tm_mon = mon - 1;
          tm.tm_mday = day;
          tm.tm_hour = 23;
          tm.tm_min = 58;
          tm.tm_sec = sec;
          std::int64_t want = (static_cast<std::int64_t>(timegm(&tm)) + 9000) * 1'000'000 + 250'000;
          EXPECT_EQ(parse_time(text), want) << text;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 10 * 12 * 6 * 3);
}

TEST(CloudEventsTest, Versions) {
  EXPECT_EQ(parse_version("42"), 42u);
  EXPECT_EQ(parse_version("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(parse_version(""));
  EXPECT_FALSE(parse_version("-1"));
  EXPECT_FALSE(parse_version("1x"));
  EXPECT_FALSE(parse_version("18446744073709551616"));
}

TEST(CloudEventsTest, HeadersFollowTheBinaryBinding) {
  kafka::message m;
  m.headers = make_headers(products(), {"id-1", "sku-1", 7, 0, false});
  EXPECT_EQ(*m.header_value("ce_specversion"), "1.0");
  EXPECT_EQ(*m.header_value("ce_id"), "id-1");
  EXPECT_EQ(*m.header_value("ce_source"), "/namespaces/catalog/dataproducts/products");
  EXPECT_EQ(*m.header_value("ce_type"), "io.datashare.products.updated");
  EXPECT_EQ(*m.header_value("ce_time"), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(*m.header_value("ce_subject"), "sku-1");
  EXPECT_EQ(*m.header_value("content-type"), "application/json");
  EXPECT_EQ(*m.header_value("datashare_version"), "7");
  m.headers = make_headers(products(), {"id-2", "sku-1", 8, 0, true});
  EXPECT_EQ(*m.header_value("ce_type"), "io.datashare.products.deleted");
  EXPECT_FALSE(m.header_value("content-type"));
}

TEST(SchemaTest, ChecksTypesAndUnknownFields) {
  auto p = products();
  using nlohmann::json;
  EXPECT_EQ(check_entity(json::parse(R"({"id":"a","price":1.5,"stock":3,"tags":[],"secret":"x"})"), p,
                         unknown_fields::reject),
            "");
  EXPECT_EQ(check_entity(json::parse(R"({"id":"a","price":null})"), p, unknown_fields::reject), "");
  EXPECT_EQ(check_entity(json::parse(R"({"price":"cheap"})"), p, unknown_fields::reject),
            R"(field "price": expected number, got string)");
  EXPECT_EQ(check_entity(json::parse(R"({"stock":1.5})"), p, unknown_fields::reject),
            R"(field "stock": expected integer, got number)");
  EXPECT_EQ(check_entity(json::parse(R"({"ratng":1})"), p, unknown_fields::reject),
            R"(unknown field "ratng" (product fields: id, price, stock, tags, secret))");
  EXPECT_EQ(check_entity(json::parse(R"({"ratng":1})"), p, unknown_fields::ignore), "");
  EXPECT_EQ(check_entity(json::parse("[1]"), p, unknown_fields::ignore), "expected a JSON object, got array");
}

TEST(SchemaTest, Utf8) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\xc3"));
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));
  EXPECT_FALSE(is_valid_utf8("\xc0\x80"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));  // surrogate
}

}  // namespace
}  // namespace datashare::sidecar::event
