#include "operator/runtime/conditions.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;

// 2024-05-01T10:00:00Z
const wall_time_point kT0 = wall_time_point{} + std::chrono::seconds(1714557600);

TEST(Rfc3339Test, FormatsSecondsAndMicrosecondsInUtc) {
  EXPECT_EQ(format_rfc3339(kT0), "2024-05-01T10:00:00Z");
  EXPECT_EQ(format_rfc3339(kT0 + 1500ms), "2024-05-01T10:00:01Z");  // truncated, like Go
  EXPECT_EQ(format_rfc3339_micro(kT0 + 1234567us), "2024-05-01T10:00:01.234567Z");
  EXPECT_EQ(format_rfc3339_micro(kT0), "2024-05-01T10:00:00.000000Z");
  EXPECT_EQ(format_rfc3339(wall_time_point{}), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(wall_time_point{} - 1s), "1969-12-31T23:59:59Z");
}

TEST(Rfc3339Test, ParsesWhatItFormatsAndOffsets) {
  EXPECT_EQ(parse_rfc3339("2024-05-01T10:00:00Z"), kT0);
  EXPECT_EQ(parse_rfc3339("2024-05-01T10:00:01.234567Z"), kT0 + 1234567us);
  EXPECT_EQ(parse_rfc3339("2024-05-01T10:00:01.5Z"), kT0 + 1500ms);
  EXPECT_EQ(parse_rfc3339("2024-05-01T10:00:01.123456789Z"), kT0 + 1123456us);
  EXPECT_EQ(parse_rfc3339("2024-05-01T12:30:00+02:30"), kT0);
  EXPECT_EQ(parse_rfc3339("2024-05-01T08:00:00-02:00"), kT0);
  EXPECT_EQ(parse_rfc3339(format_rfc3339_micro(kT0 + 42us)), kT0 + 42us);
  for (const char* bad : {"", "2024-05-01", "2024-05-01T10:00:00", "2024-13-01T10:00:00Z", "2024-02-30T10:00:00Z",
                          "2024-05-01T10:00:00.Z", "2024-05-01T10:00:00Zjunk", "2024-05-01 10:00:00Z"}) {
    EXPECT_FALSE(parse_rfc3339(bad).has_value()) << bad;
  }
}

kube::json object_with_generation(int64_t g) {
  return {{"metadata", {{"name", "x"}, {"generation", g}}}};
}

TEST(ConditionsTest, AddsANewConditionWithAllFields) {
  kube::json obj = object_with_generation(3);
  EXPECT_TRUE(set_condition(obj, {"Ready", "False", "Creating", "topic is being created"}, 3, kT0));
  const auto& list = obj["status"]["conditions"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0], kube::json({{"type", "Ready"},
                                 {"status", "False"},
                                 {"observedGeneration", 3},
                                 {"lastTransitionTime", "2024-05-01T10:00:00Z"},
                                 {"reason", "Creating"},
                                 {"message", "topic is being created"}}));
}

TEST(ConditionsTest, TransitionTimeMovesOnlyWhenStatusChanges) {
  kube::json obj = object_with_generation(1);
  set_condition(obj, {"Ready", "False", "Creating", "m1"}, 1, kT0);

  // Same status, new reason/message/generation: those change, the transition time does not.
  EXPECT_TRUE(set_condition(obj, {"Ready", "False", "Waiting", "m2"}, 2, kT0 + 10s));
  auto c = find_condition(obj, "Ready");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->reason, "Waiting");
  EXPECT_EQ(c->message, "m2");
  EXPECT_EQ(c->observed_generation, 2);
  EXPECT_EQ(c->last_transition_time, "2024-05-01T10:00:00Z");

  // Nothing differs: no change reported, so the caller skips the status write.
  EXPECT_FALSE(set_condition(obj, {"Ready", "False", "Waiting", "m2"}, 2, kT0 + 20s));
  EXPECT_EQ(find_condition(obj, "Ready")->last_transition_time, "2024-05-01T10:00:00Z");

  // Status changes: the transition time is now.
  EXPECT_TRUE(set_condition(obj, {"Ready", "True", "Created", ""}, 2, kT0 + 30s));
  c = find_condition(obj, "Ready");
  EXPECT_EQ(c->status, "True");
  EXPECT_EQ(c->last_transition_time, "2024-05-01T10:00:30Z");
  EXPECT_TRUE(is_true(obj, "Ready"));
  EXPECT_FALSE(is_false(obj, "Ready"));
}

TEST(ConditionsTest, KeepsOtherConditionsAndTheirOrder) {
  kube::json obj = object_with_generation(1);
  obj["status"] = {{"phase", "Pending"}};
  set_condition(obj, {"Ready", "False", "Creating", ""}, 1, kT0);
  set_condition(obj, {"Synced", "Unknown", "NotYetSynced", ""}, 1, kT0);
  set_condition(obj, {"Ready", "True", "Created", ""}, 1, kT0 + 1s);
  const auto& list = obj["status"]["conditions"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["type"], "Ready");
  EXPECT_EQ(list[1]["type"], "Synced");
  EXPECT_EQ(obj["status"]["phase"], "Pending");
  EXPECT_TRUE(has_condition_status(obj, "Synced", kConditionUnknown));
  EXPECT_FALSE(is_true(obj, "Missing"));
  EXPECT_FALSE(find_condition(obj, "Missing"));

  EXPECT_TRUE(remove_condition(obj, "Ready"));
  EXPECT_FALSE(remove_condition(obj, "Ready"));
  EXPECT_EQ(obj["status"]["conditions"].size(), 1u);
}

TEST(ConditionsTest, AConditionWrittenByHandWithoutTransitionTimeGetsOne) {
  kube::json obj = {{"status", {{"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}};
  EXPECT_TRUE(set_condition(obj, {"Ready", "True", "Created", ""}, 0, kT0));
  EXPECT_EQ(find_condition(obj, "Ready")->last_transition_time, "2024-05-01T10:00:00Z");
}

TEST(ConditionsTest, RejectsWhatTheApiServerWouldReject) {
  kube::json obj = object_with_generation(1);
  EXPECT_THROW(set_condition(obj, {"", "True", "R", ""}, 1, kT0), std::invalid_argument);
  EXPECT_THROW(set_condition(obj, {"Ready", "true", "R", ""}, 1, kT0), std::invalid_argument);
  EXPECT_THROW(set_condition(obj, {"Ready", "True", "", ""}, 1, kT0), std::invalid_argument);
  EXPECT_THROW(set_condition(obj, {"Ready", "True", "has space", ""}, 1, kT0), std::invalid_argument);
  EXPECT_THROW(set_condition(obj, {"Ready", "True", "1Digit", ""}, 1, kT0), std::invalid_argument);
  EXPECT_THROW(set_condition(obj, {"Ready", "True", "Trailing:", ""}, 1, kT0), std::invalid_argument);
  EXPECT_NO_THROW(set_condition(obj, {"Ready", "True", "A", ""}, 1, kT0));
  EXPECT_NO_THROW(set_condition(obj, {"Ready", "True", "Reason_1,b:c", ""}, 1, kT0));
  kube::json bad_status = {{"status", "oops"}};
  EXPECT_THROW(set_condition(bad_status, {"Ready", "True", "R", ""}, 1, kT0), std::invalid_argument);
}

TEST(ConditionsTest, ReadsToleratesMissingOrMalformedStatus) {
  EXPECT_FALSE(find_condition(kube::json::object(), "Ready"));
  EXPECT_FALSE(find_condition(kube::json{{"status", nullptr}}, "Ready"));
  EXPECT_FALSE(find_condition(kube::json{{"status", {{"conditions", "x"}}}}, "Ready"));
  kube::json none = kube::json::object();
  EXPECT_FALSE(remove_condition(none, "Ready"));
}

}  // namespace
}  // namespace datashare::runtime
