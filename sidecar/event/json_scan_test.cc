#include "sidecar/event/json_scan.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

namespace datashare::sidecar::event {
namespace {

json_scan_result scan(std::string_view text) {
  std::vector<json_member> m;
  return scan_json_object(text, m);
}

TEST(JsonScanTest, MembersAsSlices) {
  std::vector<json_member> m;
  ASSERT_EQ(scan_json_object(
                R"( {"id" : "a\"b", "n":-1.5e3,"i":7, "o":{"x":[1,{"y":null}]},"t":true,"z":null, "a\u0062":[]} )", m),
            json_scan_result::object);
  ASSERT_EQ(m.size(), 7u);
  EXPECT_EQ(m[0].name, "id");
  EXPECT_EQ(m[0].value, R"("a\"b")");
  EXPECT_EQ(m[0].kind, json_kind::string);
  EXPECT_EQ(m[1].value, "-1.5e3");
  EXPECT_EQ(m[1].kind, json_kind::number);
  EXPECT_EQ(m[2].kind, json_kind::integer);
  EXPECT_EQ(m[3].value, R"({"x":[1,{"y":null}]})");
  EXPECT_EQ(m[3].kind, json_kind::object);
  EXPECT_EQ(m[4].kind, json_kind::boolean);
  EXPECT_EQ(m[5].kind, json_kind::null);
  EXPECT_TRUE(m[6].name_has_escapes);
  EXPECT_EQ(unescape_json_string(m[6].name), "ab");
  EXPECT_EQ(m[6].kind, json_kind::array);
}

TEST(JsonScanTest, KindsOfFailure) {
  EXPECT_EQ(scan("[1,2]"), json_scan_result::not_an_object);
  EXPECT_EQ(scan("\"s\""), json_scan_result::not_an_object);
  EXPECT_EQ(scan("12"), json_scan_result::not_an_object);
  for (const char* bad : {"",
                          " ",
                          "{",
                          "{\"a\"}",
                          "{\"a\":}",
                          "{\"a\":1,}",
                          "{a:1}",
                          "{\"a\":01}",
                          "{\"a\":1.}",
                          "{\"a\":.5}",
                          "{\"a\":+1}",
                          "{\"a\":tru}",
                          "{\"a\":\"\\x\"}",
                          "{\"a\":\"\\u12\"}",
                          "{\"a\":\"\x01\"}",
                          "{\"a\":\"\xff\"}",
                          "{\"a\":\"\xc0\x80\"}",
                          "{} {}",
                          "{\"a\":1}x",
                          "{\"a\":[1,]}",
                          "not json"}) {
    EXPECT_EQ(scan(bad), json_scan_result::invalid) << bad;
  }
  std::string deep(100, '[');
  deep += std::string(100, ']');
  EXPECT_EQ(scan("{\"a\":" + deep + "}"), json_scan_result::invalid);  // beyond the depth limit
}

TEST(JsonScanTest, Unescape) {
  EXPECT_EQ(unescape_json_string(R"(a\n\t\"\\\/\u00e9\u20ac)"), "a\n\t\"\\/\xc3\xa9\xe2\x82\xac");
  EXPECT_EQ(unescape_json_string(R"(\ud83d\ude00)"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(unescape_json_string(R"(\ud83d)"), "\xef\xbf\xbd");
}

// The scanner agrees with nlohmann::json on what is valid JSON, over random mutations of
// realistic events (bytes replaced, inserted, removed).
TEST(JsonScanTest, LastMemberAndQuotedNames) {
  std::vector<json_member> members;
  ASSERT_EQ(scan_json_object(R"({"a":1,"b":2,"\u0061":3,"c":null})", members), json_scan_result::object);
  const json_member* a = last_member(members, "a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->value, "3") << "the last of a repeated name, escaped or not";
  ASSERT_NE(last_member(members, "c"), nullptr);
  EXPECT_EQ(last_member(members, "c")->kind, json_kind::null);
  EXPECT_EQ(last_member(members, "d"), nullptr);
  EXPECT_EQ(quote_json_string("price"), "\"price\"");
  EXPECT_EQ(quote_json_string("a\"b\\c\n\x01"), R"("a\"b\\c\n\u0001")");
  EXPECT_EQ(quote_json_string("caf\xc3\xa9 \xff"), "\"caf\xc3\xa9 \xef\xbf\xbd\"") << "UTF-8 kept, invalid replaced";
}

// Strings are skimmed eight bytes at a time: a byte that needs a look (quote, backslash, control
// character, the start of a UTF-8 sequence, a bad UTF-8 byte) is found at every position of a
// chunk, and the value's end at every offset.
TEST(JsonScanTest, EveryByteOfALongStringIsSeen) {
  const std::vector<std::pair<std::string, json_scan_result>> specials = {
      {"\\\"", json_scan_result::object},                                           // an escaped quote
      {"\\n", json_scan_result::object},   {"\xc3\xa9", json_scan_result::object},  // é
      {"\"", json_scan_result::invalid},  // ends the string early: the rest is not JSON
      {"\n", json_scan_result::invalid},  // a raw control character
      {"\x1f", json_scan_result::invalid}, {"\xff", json_scan_result::invalid},  // not UTF-8
      {"\\q", json_scan_result::invalid},                                        // not an escape
  };
  for (std::size_t len = 0; len < 24; ++len) {
    for (std::size_t at = 0; at <= len; ++at) {
      for (const auto& [special, expected] : specials) {
        std::string body = std::string(at, 'a') + special + std::string(len - at, 'b');
        std::string text = R"({"s":")" + body + R"(","n":1})";
        std::vector<json_member> m;
        ASSERT_EQ(scan_json_object(text, m), expected) << text;
        if (expected == json_scan_result::object) {
          ASSERT_EQ(m.size(), 2u) << text;
          EXPECT_EQ(m[0].value, "\"" + body + "\"") << text;
        }
      }
      // Unterminated at every length.
      EXPECT_EQ(scan(R"({"s":")" + std::string(len, 'a')), json_scan_result::invalid);
    }
  }
}

TEST(JsonScanTest, AgreesWithNlohmannOnMutatedInputs) {
  const std::vector<std::string> seeds = {
      R"({"id":"sku-1","name":"Lamp \u00e9","price":12.5,"tags":["a","b"],"dims":{"w":1,"h":2e-3},"ok":true,"x":null})",
      R"({"a":[[],{}],"b":-0.0,"c":"\"\\"})", R"({})", R"([1,2,3])"};
  const std::string alphabet = "{}[]\":,.-+eE0123456789tfnul\\ \t\nabc\x01\x7f\xc3\xa9\xff";
  std::mt19937 rng(42);
  int checked = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string s = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      std::size_t pos = rng() % s.size();
      char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          s[pos] = c;
          break;
        case 1:
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(pos), c);
          break;
        default:
          s.erase(pos, 1);
          break;
      }
    }
    bool ours = scan(s) != json_scan_result::invalid;
    bool theirs = nlohmann::json::accept(s);
    ASSERT_EQ(ours, theirs) << "input: " << s;
    ++checked;
  }
  EXPECT_EQ(checked, 20000);
}

}  // namespace
}  // namespace datashare::sidecar::event
