// The events recorder against a scripted API server (fake_transport): what it writes, how it
// folds repeats into a series, and that it stays bounded and silent when writes fail.
#include "operator/runtime/events.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "operator/kube/fake_transport.h"

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr auto kRealTimeout = 10s;
constexpr const char* kEvents = "/apis/events.k8s.io/v1/namespaces/shop/events";

// 2024-05-01T10:00:00Z
const wall_time_point kT0 = wall_time_point{} + std::chrono::seconds(1714557600);

const object_reference kConfigMap{.api_version = "v1",
                                  .kind = "ConfigMap",
                                  .ns = "shop",
                                  .name = "orders",
                                  .uid = "0f7c-uid",
                                  .resource_version = "41"};

kube::testing::scripted_response created() {
  return {201, "{}"};
}
kube::testing::scripted_response patched() {
  return {200, "{}"};
}
kube::testing::scripted_response status(int code, const std::string& reason) {
  return {code, kube::json({{"kind", "Status"}, {"reason", reason}, {"code", code}}).dump()};
}

// Lets requests through only when opened: holds the writer inside a request.
class gated_transport final : public kube::http_transport {
 public:
  explicit gated_transport(std::shared_ptr<kube::http_transport> inner) : inner_(std::move(inner)) {}
  kube::http_response send(const kube::http_request& r) override {
    {
      std::unique_lock lock(mu_);
      ++arrived_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return open_; });
    }
    return inner_->send(r);
  }
  kube::http_response stream_lines(const kube::http_request& r, const std::function<bool(std::string_view)>& f,
                                   std::stop_token stop) override {
    return inner_->stream_lines(r, f, stop);
  }
  std::string host() const override { return inner_->host(); }
  bool wait_arrived(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kRealTimeout, [&] { return arrived_ >= n; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::shared_ptr<kube::http_transport> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool open_ = false;
};

class EventsTest : public ::testing::Test {
 protected:
  std::unique_ptr<event_recorder> recorder(event_recorder_options o = {},
                                           const std::shared_ptr<kube::http_transport>& transport = nullptr) {
    kube::client_options co;
    co.max_attempts = 1;
    co.sleep = [](std::chrono::milliseconds) {};
    client_ = std::make_unique<kube::client>(transport ? transport : transport_, co);
    if (o.reporting_controller.empty()) o.reporting_controller = "datashare.io/operator";
    if (o.reporting_instance.empty()) o.reporting_instance = "operator-0";
    o.time_source = &clock_;
    o.wall_now = [this] { return kT0 + (clock_.now() - start_); };
    o.on_error = [this](const std::string& m) {
      std::lock_guard lock(mu_);
      errors_.push_back(m);
    };
    return std::make_unique<event_recorder>(*client_, std::move(o));
  }

  std::vector<std::string> errors() {
    std::lock_guard lock(mu_);
    return errors_;
  }
  std::string request(size_t i) {
    const auto r = transport_->requests().at(i);
    return r.method + " " + r.target;
  }
  kube::json body(size_t i) { return kube::json::parse(transport_->requests().at(i).body); }
  std::string micro(clock::duration since_start) {
    return format_rfc3339_micro(kT0 + std::chrono::duration_cast<wall_time_point::duration>(since_start));
  }

  manual_clock clock_;
  const clock::time_point start_ = clock_.now();
  std::shared_ptr<kube::testing::fake_transport> transport_ = std::make_shared<kube::testing::fake_transport>();
  std::unique_ptr<kube::client> client_;
  std::mutex mu_;
  std::vector<std::string> errors_;
};

TEST_F(EventsTest, CreatesAnEventsK8sIoV1EventWithEveryField) {
  auto events = recorder();
  transport_->push(created());
  clock_.advance(1234567us);
  events->record(kConfigMap, event_type::normal, "TopicCreated", "CreateTopic", "topic orders.v1 created");
  ASSERT_TRUE(events->flush(kRealTimeout));

  ASSERT_EQ(transport_->requests().size(), 1u);
  EXPECT_EQ(request(0), std::string("POST ") + kEvents);
  kube::json e = body(0);
  EXPECT_THAT(e["metadata"]["name"].get<std::string>(), MatchesRegex("orders\\.[0-9a-f]+"));
  e["metadata"].erase("name");
  EXPECT_EQ(e, kube::json::parse(R"({
    "apiVersion": "events.k8s.io/v1", "kind": "Event",
    "metadata": {"namespace": "shop"},
    "eventTime": "2024-05-01T10:00:01.234567Z",
    "reportingController": "datashare.io/operator", "reportingInstance": "operator-0",
    "action": "CreateTopic", "reason": "TopicCreated", "type": "Normal", "note": "topic orders.v1 created",
    "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "orders",
                  "uid": "0f7c-uid", "resourceVersion": "41"}})"));
  EXPECT_EQ(events->stats().created, 1u);
  EXPECT_TRUE(errors().empty());
}

TEST_F(EventsTest, RepeatsWithinTheWindowBecomeOneSeriesPatchedInPlace) {
  auto events = recorder();
  transport_->push(created());
  transport_->push(patched());
  transport_->push(patched());
  events->record(kConfigMap, event_type::warning, "SyncFailed", "Sync", "broker unreachable");
  clock_.advance(1s);
  events->record(kConfigMap, event_type::warning, "SyncFailed", "Sync", "broker unreachable");
  clock_.advance(5min);
  events->record(kConfigMap, event_type::warning, "SyncFailed", "Sync", "broker unreachable");
  ASSERT_TRUE(events->flush(kRealTimeout));

  ASSERT_EQ(transport_->requests().size(), 3u);
  const std::string name = body(0)["metadata"]["name"];
  EXPECT_EQ(request(1), std::string("PATCH ") + kEvents + "/" + name);
  EXPECT_EQ(transport_->requests()[1].content_type, "application/merge-patch+json");
  EXPECT_EQ(body(1), kube::json({{"series", {{"count", 2}, {"lastObservedTime", micro(1s)}}}}));
  EXPECT_EQ(request(2), std::string("PATCH ") + kEvents + "/" + name);
  EXPECT_EQ(body(2), kube::json({{"series", {{"count", 3}, {"lastObservedTime", micro(5min + 1s)}}}}));
  EXPECT_EQ(events->stats().created, 1u);
  EXPECT_EQ(events->stats().patched, 2u);
}

TEST_F(EventsTest, ARepeatAfterTheWindowStartsANewEvent) {
  auto events = recorder();
  transport_->push(created());
  transport_->push(created());
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "");
  clock_.advance(6min + 1s);
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "");
  ASSERT_TRUE(events->flush(kRealTimeout));
  EXPECT_EQ(request(0), std::string("POST ") + kEvents);
  EXPECT_EQ(request(1), std::string("POST ") + kEvents);
  EXPECT_NE(body(0)["metadata"]["name"], body(1)["metadata"]["name"]);
  EXPECT_FALSE(body(1).contains("series"));
  EXPECT_FALSE(body(1).contains("note"));  // empty notes are left out
}

TEST_F(EventsTest, EventsDifferingInObjectTypeReasonActionOrNoteAreSeparate) {
  auto events = recorder();
  for (int i = 0; i < 6; ++i) transport_->push(created());
  object_reference other = kConfigMap;
  other.name = "payments";
  object_reference recreated = kConfigMap;
  recreated.uid = "new-uid";  // same name, a new object
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n");
  events->record(other, event_type::normal, "Synced", "Sync", "n");
  events->record(recreated, event_type::normal, "Synced", "Sync", "n");
  events->record(kConfigMap, event_type::warning, "Synced", "Sync", "n");
  events->record(kConfigMap, event_type::normal, "Resynced", "Sync", "n");
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "a different note");
  ASSERT_TRUE(events->flush(kRealTimeout));
  ASSERT_EQ(transport_->requests().size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(transport_->requests()[i].method, "POST") << i;
  // A new resourceVersion of the same object is the same object.
  object_reference newer = kConfigMap;
  newer.resource_version = "99";
  transport_->push(patched());
  events->record(newer, event_type::normal, "Synced", "Sync", "n");
  ASSERT_TRUE(events->flush(kRealTimeout));
  EXPECT_EQ(transport_->requests()[6].method, "PATCH");
}

TEST_F(EventsTest, ASeriesWhoseEventExpiredIsWrittenAgainWithItsCount) {
  auto events = recorder();
  transport_->push(created());
  transport_->push(status(404, "NotFound"));
  transport_->push(created());
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n");
  clock_.advance(2s);
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n");
  ASSERT_TRUE(events->flush(kRealTimeout));
  ASSERT_EQ(transport_->requests().size(), 3u);
  kube::json again = body(2);
  EXPECT_EQ(request(2), std::string("POST ") + kEvents);
  EXPECT_EQ(again["metadata"]["name"], body(0)["metadata"]["name"]);
  EXPECT_EQ(again["series"], kube::json({{"count", 2}, {"lastObservedTime", micro(2s)}}));
  EXPECT_EQ(again["eventTime"], body(0)["eventTime"]);
}

TEST_F(EventsTest, AFailedWriteIsReportedDroppedAndNeverThrown) {
  auto events = recorder();
  transport_->push(status(403, "Forbidden"));
  transport_->push({.transport_failure = true});
  EXPECT_NO_THROW(events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n"));
  EXPECT_NO_THROW(events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n"));
  ASSERT_TRUE(events->flush(kRealTimeout));
  // Neither was remembered as a series: both tried to create.
  EXPECT_EQ(request(0), std::string("POST ") + kEvents);
  EXPECT_EQ(request(1), std::string("POST ") + kEvents);
  auto e = errors();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_THAT(e[0], HasSubstr("event Normal Synced about ConfigMap shop/orders"));
  EXPECT_THAT(e[0], HasSubstr("403"));
  EXPECT_EQ(events->stats().failed, 2u);

  // A failed series patch keeps the count for the next one.
  transport_->push(created());
  transport_->push(status(500, "InternalError"));
  transport_->push(patched());
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n");
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n");
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n");
  ASSERT_TRUE(events->flush(kRealTimeout));
  EXPECT_EQ(body(4)["series"]["count"], 3);
}

TEST_F(EventsTest, AnEventInANamespaceBeingDeletedIsDroppedQuietly) {
  auto events = recorder();
  transport_->push({403, kube::json({{"kind", "Status"},
                                     {"reason", "Forbidden"},
                                     {"code", 403},
                                     {"details", {{"causes", {{{"reason", "NamespaceTerminating"}}}}}}})
                             .dump()});
  events->record(kConfigMap, event_type::normal, "Synced", "Sync", "n");
  ASSERT_TRUE(events->flush(kRealTimeout));
  EXPECT_EQ(request(0), std::string("POST ") + kEvents);
  EXPECT_TRUE(errors().empty()) << errors().front();
  EXPECT_EQ(events->stats().failed, 0u);
  EXPECT_EQ(events->stats().dropped, 1u);
}

TEST_F(EventsTest, TheQueueIsBoundedAndOverflowIsDropped) {
  auto gate = std::make_shared<gated_transport>(transport_);
  auto events = recorder({.max_pending = 2}, gate);
  for (int i = 0; i < 3; ++i) transport_->push(created());
  events->record(kConfigMap, event_type::normal, "R0", "A", "");
  ASSERT_TRUE(gate->wait_arrived(1));  // the writer is inside the first request
  for (int i = 1; i <= 4; ++i) events->record(kConfigMap, event_type::normal, "R" + std::to_string(i), "A", "");
  EXPECT_EQ(events->stats().dropped, 2u);
  gate->open();
  ASSERT_TRUE(events->flush(kRealTimeout));
  ASSERT_EQ(transport_->requests().size(), 3u);
  EXPECT_EQ(body(1)["reason"], "R1");
  EXPECT_EQ(body(2)["reason"], "R2");
  auto e = errors();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_THAT(e[0], HasSubstr("R3"));
  EXPECT_THAT(e[0], HasSubstr("dropped"));
}

TEST_F(EventsTest, RemembersABoundedNumberOfSeriesLeastRecentlySeenForgottenFirst) {
  auto events = recorder({.max_series = 2});
  for (int i = 0; i < 6; ++i) transport_->push(created());
  events->record(kConfigMap, event_type::normal, "A", "X", "");
  events->record(kConfigMap, event_type::normal, "B", "X", "");
  events->record(kConfigMap, event_type::normal, "A", "X", "");  // patch; A is now the most recent
  events->record(kConfigMap, event_type::normal, "C", "X", "");  // evicts B
  events->record(kConfigMap, event_type::normal, "A", "X", "");  // still remembered: patch
  events->record(kConfigMap, event_type::normal, "B", "X", "");  // forgotten: a new Event
  ASSERT_TRUE(events->flush(kRealTimeout));
  std::vector<std::string> methods;
  for (const auto& r : transport_->requests()) methods.push_back(r.method);
  EXPECT_EQ(methods, (std::vector<std::string>{"POST", "POST", "PATCH", "POST", "PATCH", "POST"}));
}

TEST_F(EventsTest, KeepsWithinTheApisLimitsAndNamingRules) {
  auto events = recorder();
  for (int i = 0; i < 3; ++i) transport_->push(created());
  const std::string long_note = std::string(1023, 'x') + "\xc3\xa9";  // "é" would straddle 1024
  events->record(kConfigMap, event_type::normal, std::string(200, 'R'), std::string(200, 'A'), long_note);
  const object_reference role{
      .api_version = "rbac.authorization.k8s.io/v1", .kind = "ClusterRole", .name = "system:controller:Foo"};
  events->record(role, event_type::normal, "Checked", "Check", "");
  object_reference long_name = kConfigMap;
  long_name.name = std::string(253, 'n');
  events->record(long_name, event_type::normal, "Checked", "Check", "");
  ASSERT_TRUE(events->flush(kRealTimeout));

  EXPECT_EQ(body(0)["note"].get<std::string>(), std::string(1023, 'x'));
  EXPECT_EQ(body(0)["reason"].get<std::string>().size(), 128u);
  EXPECT_EQ(body(0)["action"].get<std::string>().size(), 128u);
  // Cluster-scoped objects' events go to "default"; the name is made a valid object name.
  EXPECT_EQ(request(1), "POST /apis/events.k8s.io/v1/namespaces/default/events");
  EXPECT_THAT(body(1)["metadata"]["name"].get<std::string>(), MatchesRegex("system-controller-foo\\.[0-9a-f]+"));
  EXPECT_FALSE(body(1)["regarding"].contains("namespace"));
  EXPECT_LE(body(2)["metadata"]["name"].get<std::string>().size(), 253u);
}

TEST_F(EventsTest, EventsRecordedInTheSameInstantGetDistinctNames) {
  auto events = recorder();
  transport_->push(created());
  transport_->push(created());
  events->record(kConfigMap, event_type::normal, "A", "X", "");
  events->record(kConfigMap, event_type::normal, "B", "X", "");  // the manual clock has not moved
  ASSERT_TRUE(events->flush(kRealTimeout));
  EXPECT_NE(body(0)["metadata"]["name"], body(1)["metadata"]["name"]);
}

TEST_F(EventsTest, StoppingDropsWhatIsStillQueuedAndSaysSo) {
  auto gate = std::make_shared<gated_transport>(transport_);
  auto events = recorder({}, gate);
  transport_->push(created());
  events->record(kConfigMap, event_type::normal, "R0", "A", "");
  ASSERT_TRUE(gate->wait_arrived(1));
  events->record(kConfigMap, event_type::normal, "R1", "A", "");
  EXPECT_FALSE(events->flush(50ms));
  gate->open();
  events.reset();
  auto e = errors();
  // R1 was either written before the stop was seen, or dropped and reported.
  EXPECT_LE(e.size(), 1u);
  if (!e.empty()) {
    EXPECT_THAT(e[0], HasSubstr("not written"));
  }
}

TEST(EventReferenceTest, FromAnObjectAndFromAListItemWithItsKind) {
  const kube::json cm = {{"apiVersion", "v1"},
                         {"kind", "ConfigMap"},
                         {"metadata", {{"name", "a"}, {"namespace", "n"}, {"uid", "u"}, {"resourceVersion", "7"}}}};
  object_reference r = reference_to(cm);
  EXPECT_EQ(r.api_version, "v1");
  EXPECT_EQ(r.kind, "ConfigMap");
  EXPECT_EQ(r.ns, "n");
  EXPECT_EQ(r.name, "a");
  EXPECT_EQ(r.uid, "u");
  EXPECT_EQ(r.resource_version, "7");

  kube::json item = cm;
  item.erase("apiVersion");
  item.erase("kind");
  r = reference_to(item, kube::resources::deployments);
  EXPECT_EQ(r.api_version, "apps/v1");
  EXPECT_EQ(r.kind, "Deployment");
  EXPECT_EQ(reference_to(cm, kube::resources::deployments).kind, "ConfigMap");
}

TEST(EventRecorderOptionsTest, ReportingControllerAndInstanceAreRequired) {
  auto transport = std::make_shared<kube::testing::fake_transport>();
  kube::client client(transport);
  EXPECT_THROW(event_recorder(client, {.reporting_instance = "i"}), std::invalid_argument);
  EXPECT_THROW(event_recorder(client, {.reporting_controller = "c"}), std::invalid_argument);
}

}  // namespace
}  // namespace datashare::runtime
