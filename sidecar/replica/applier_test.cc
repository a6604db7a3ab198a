#include "sidecar/replica/applier.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sidecar/event/cloudevents.h"
#include "sidecar/replica/layout.h"
#include "sidecar/store/memory_kv.h"

namespace datashare::sidecar::replica {
namespace {

config::subscribe_spec spec() {
  config::subscribe_spec s;
  s.policy = "orders-products";
  s.product.name = "products";
  s.product.namespace_name = "catalog";
  s.product.key = "id";
  s.product.fields = {{"id", config::field_type::string, false},
                      {"name", config::field_type::string, false},
                      {"price", config::field_type::number, false},
                      {"secret", config::field_type::string, true}};
  s.fields = {"id", "name"};
  s.max_event_bytes = 256;
  return s;
}

kafka::message event(std::int64_t offset, std::optional<std::string> key, std::uint64_t version,
                     std::optional<std::string> value, std::int32_t partition = 0) {
  kafka::message m;
  m.topic = "t";
  m.partition = partition;
  m.offset = offset;
  m.key = std::move(key);
  m.value = std::move(value);
  m.timestamp_ms = 1000;
  m.headers.push_back({"datashare_version", std::to_string(version)});
  return m;
}

std::optional<record> stored(const store::kv& kv, const std::string& key, std::string& buf) {
  if (kv.get(data_key(key), buf)) return std::nullopt;
  return decode_record(buf);
}

class applier_test : public ::testing::Test {
 protected:
  plan apply(const std::vector<kafka::message>& msgs) {
    plan p;
    EXPECT_FALSE(applier_.prepare(msgs, kv_, 5'000'000, p));
    EXPECT_FALSE(kv_.write(p.batch, false));
    return p;
  }
  applier applier_{spec()};
  store::memory_kv kv_;
  std::string buf_;
};

TEST_F(applier_test, ProjectsThePolicyFields) {
  auto p = apply({event(0, "a", 1, R"({"id":"a","name":"A","price":2,"secret":"s","extra":1})")});
  EXPECT_EQ(p.applied, 1u);
  auto r = stored(kv_, "a", buf_);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, 1u);
  EXPECT_FALSE(r->deleted);
  EXPECT_EQ(nlohmann::json::parse(r->value), nlohmann::json::parse(R"({"id":"a","name":"A"})"));
  EXPECT_EQ(r->event_time_us, 1'000'000);  // no ce_time: the Kafka timestamp
  ASSERT_EQ(p.propagation_us.size(), 1u);
  EXPECT_EQ(p.propagation_us[0], 4'000'000);
}

TEST_F(applier_test, SkipsEventsNotNewerThanTheStoredVersion) {
  apply({event(0, "a", 5, R"({"name":"v5"})")});
  auto p = apply({event(1, "a", 5, R"({"name":"dup"})"), event(2, "a", 3, R"({"name":"old"})"),
                  event(3, "a", 6, R"({"name":"v6"})"), event(4, "a", 6, R"({"name":"dup6"})")});
  EXPECT_EQ(p.applied, 1u);
  EXPECT_EQ(p.stale, 3u);
  auto r = stored(kv_, "a", buf_);
  EXPECT_EQ(r->value, R"({"name":"v6"})");
  EXPECT_EQ(load_counter(kv_, kStaleCounter), 3u);
  EXPECT_EQ(load_counter(kv_, kAppliedCounter), 2u);
}

TEST_F(applier_test, AKeyNeverWrittenInThisRunOfAFreshStoreIsNotLookedUp) {
  apply({event(0, "a", 5, R"({"name":"v5"})"), event(1, "b", 5, R"({"name":"v5"})")});
  // `fresh` says which keys this run wrote: "b" is one of them, so its stored version is read and
  // the older event is stale; "a" is not, so its lookup is skipped (the caller vouches that the
  // store was empty at start; here it is not, which shows the skip).
  written_keys fresh(100);
  fresh.add("b");
  plan p;
  ASSERT_FALSE(applier_.prepare(std::vector{event(2, "a", 3, R"({"name":"v3"})"), event(3, "b", 3, R"({"name":"v3"})")},
                                kv_, 5'000'000, p, {}, nullptr, &fresh));
  EXPECT_EQ(p.applied, 1u);
  EXPECT_EQ(p.stale, 1u);
  ASSERT_EQ(p.written.find("a"), 3u);
  EXPECT_EQ(p.written.find("b"), 0u);
}

TEST_F(applier_test, DeletesKeepATombstoneThatBlocksOlderEvents) {
  apply({event(0, "a", 1, R"({"name":"x"})"), event(1, "a", 2, std::nullopt)});
  auto r = stored(kv_, "a", buf_);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->deleted);
  EXPECT_EQ(r->version, 2u);
  auto p = apply({event(2, "a", 1, R"({"name":"zombie"})")});
  EXPECT_EQ(p.stale, 1u);
  EXPECT_TRUE(stored(kv_, "a", buf_)->deleted);
}

TEST_F(applier_test, OffsetsAndCountersAreInTheSameBatchAsTheData) {
  plan p;
  ASSERT_FALSE(applier_.prepare(
      std::vector<kafka::message>{event(7, "a", 1, "{}", 0), event(3, "b", 1, "{}", 2), event(8, "c", 1, "{}", 0)}, kv_,
      0, p));
  std::map<std::string, std::string> ops;
  for (const auto& op : p.batch.ops()) ops[std::string(op.key)] = op.value;
  EXPECT_EQ(decode_u64(ops.at(offset_key(0))), 9u);
  EXPECT_EQ(decode_u64(ops.at(offset_key(2))), 4u);
  // Each partition's count under a key of its own.
  EXPECT_EQ(decode_u64(ops.at(counter_key(kAppliedCounter, 0))), 2u);
  EXPECT_EQ(decode_u64(ops.at(counter_key(kAppliedCounter, 2))), 1u);
  EXPECT_EQ(ops.count(std::string(kAppliedCounter)), 0u);
  EXPECT_TRUE(ops.count(data_key("a")) && ops.count(data_key("b")) && ops.count(data_key("c")));
  // A failed write leaves nothing: neither data nor offsets moved.
  kv_.fail_next_writes(1);
  EXPECT_TRUE(kv_.write(p.batch, false));
  std::map<std::int32_t, std::int64_t> offsets;
  ASSERT_FALSE(load_offsets(kv_, offsets));
  EXPECT_TRUE(offsets.empty());
  ASSERT_FALSE(kv_.write(p.batch, false));
  ASSERT_FALSE(load_offsets(kv_, offsets));
  EXPECT_EQ(offsets, (std::map<std::int32_t, std::int64_t>{{0, 9}, {2, 4}}));
}

TEST_F(applier_test, MessagesBelowTheStoredOffsetAreNotAppliedAgain) {
  apply({event(0, "a", 1, R"({"name":"1"})"), event(1, "a", 2, R"({"name":"2"})")});
  auto p = apply(
      {event(0, "a", 1, R"({"name":"1"})"), event(1, "a", 2, R"({"name":"2"})"), event(2, "a", 3, R"({"name":"3"})")});
  EXPECT_EQ(p.replayed, 2u);
  EXPECT_EQ(p.applied, 1u);
  EXPECT_EQ(p.stale, 0u);
  std::map<std::int32_t, std::int64_t> offsets;
  ASSERT_FALSE(load_offsets(kv_, offsets));
  EXPECT_EQ(offsets[0], 3);
}

TEST_F(applier_test, PoisonEventsAreReportedAndTheStreamGoesOn) {
  std::vector<kafka::message> msgs = {
      event(0, std::nullopt, 1, "{}"),
      event(1, "a", 1, "not json"),
      event(2, "a", 1, "[1,2]"),
      event(3, "a", 1, R"({"price":"cheap"})"),
      event(4, "a", 1, R"({"id":"b"})"),
      event(5, "a", 1, std::string(300, ' ') + "{}"),
      event(6, "a", 7, R"({"name":"ok"})"),
  };
  kafka::message no_version = event(7, "a", 1, "{}");
  no_version.headers.clear();
  msgs.push_back(no_version);
  kafka::message bad_version = event(8, "a", 1, "{}");
  bad_version.headers[0].value = "seven";
  msgs.push_back(bad_version);
  kafka::message bad_time = event(9, "a", 9, "{}");
  bad_time.headers.push_back({"ce_time", "yesterday"});
  msgs.push_back(bad_time);
  kafka::message type_mismatch = event(10, "a", 9, "{}");
  type_mismatch.headers.push_back({"ce_type", "io.datashare.products.deleted"});
  msgs.push_back(type_mismatch);
  auto p = apply(msgs);
  ASSERT_EQ(p.poison.size(), 10u);
  std::vector<std::string> reasons;
  for (auto& [m, reason] : p.poison) reasons.push_back(reason);
  EXPECT_EQ(reasons[0], "key missing");
  EXPECT_EQ(reasons[1], "value is not JSON");
  EXPECT_EQ(reasons[2], "value is not a JSON object");
  EXPECT_EQ(reasons[3], R"(field "price": expected number, got string)");
  EXPECT_EQ(reasons[4], R"(key field "id" is "b" but the message key is "a")");
  EXPECT_EQ(reasons[5].rfind("oversized: 303 bytes", 0), 0u) << reasons[5];
  EXPECT_EQ(reasons[6], "missing datashare_version header");
  EXPECT_EQ(reasons[7], "datashare_version is not a positive integer");
  EXPECT_EQ(reasons[8], "ce_time is not an RFC 3339 time");
  EXPECT_EQ(reasons[9], "ce_type is io.datashare.products.deleted but the value is not null");
  EXPECT_EQ(p.applied, 1u);
  EXPECT_EQ(stored(kv_, "a", buf_)->value, R"({"name":"ok"})");
  EXPECT_EQ(load_counter(kv_, kDlqCounter), 10u);
  std::map<std::int32_t, std::int64_t> offsets;
  ASSERT_FALSE(load_offsets(kv_, offsets));
  EXPECT_EQ(offsets[0], 11);  // poison events are consumed too
}

// An integer key: the field holds the number the message key spells (the gateway's and the
// publisher's rule, event::key_field_value).
TEST(ApplierKeyTest, AnIntegerKeyIsTheNumberTheMessageKeySpells) {
  auto s = spec();
  s.product.fields[0].type = config::field_type::integer;
  applier a{s};
  store::memory_kv kv;
  plan p;
  std::vector<kafka::message> msgs = {event(0, "42", 1, R"({"id":42,"name":"A"})"), event(1, "43", 1, R"({"id":42})"),
                                      event(2, "042", 1, R"({"id":42})"),
                                      event(3, "44", 1, R"({"name":"no key field"})")};
  ASSERT_FALSE(a.prepare(msgs, kv, 5'000'000, p));
  ASSERT_FALSE(kv.write(p.batch, false));
  EXPECT_EQ(p.applied, 2u);
  ASSERT_EQ(p.poison.size(), 2u);
  EXPECT_EQ(p.poison[0].second, R"(key field "id" is 42 but the message key is "43")");
  EXPECT_EQ(p.poison[1].second, R"(key field "id" is 42 but the message key is "042")");
  std::string buf;
  EXPECT_EQ(stored(kv, "42", buf)->value, R"({"id":42,"name":"A"})");
}

TEST_F(applier_test, UsesCeTimeWhenPresent) {
  auto m = event(0, "a", 1, "{}");
  m.headers.push_back({"ce_time", event::format_time(4'500'000)});
  auto p = apply({m});
  EXPECT_EQ(p.propagation_us.at(0), 500'000);
  EXPECT_EQ(p.newest_event_time_us, 4'500'000);
}

TEST_F(applier_test, StoreErrorsAreReturnedNotHidden) {
  kv_.fail_next_reads(2);
  plan p;
  EXPECT_EQ(applier_.prepare(std::vector<kafka::message>{event(0, "a", 1, "{}")}, kv_, 0, p), store::errc::io_error);
}

TEST(LayoutTest, RecordsRoundTripAndRejectGarbage) {
  auto bytes = encode_record(42, -5, false, R"({"a":1})");
  auto r = decode_record(bytes);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, 42u);
  EXPECT_EQ(r->event_time_us, -5);
  EXPECT_EQ(r->value, R"({"a":1})");
  EXPECT_FALSE(decode_record("short"));
  EXPECT_FALSE(decode_record(std::string(16, '\0') + "\x07"));
}

}  // namespace
}  // namespace datashare::sidecar::replica
