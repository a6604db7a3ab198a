// The events recorder and the object helpers against the real API server: Events as the
// server stores them (and as `kubectl describe` reads them through core/v1), repeats folded into
// one Event's series, and finalizer patches guarded by resourceVersion.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"
#include "operator/runtime/events.h"
#include "operator/runtime/finalizers.h"
#include "tests/support/cluster_env.h"

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;

const kube::resource_kind kCoreEvents{"", "v1", "events", "Event", true};

std::string unique(const std::string& prefix) {
  return prefix + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000000);
}

class EventsIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto cfg = kube::load_kubeconfig({datashare::testing::require_env("KUBECONFIG")});
    client_ = new kube::client(std::make_shared<kube::cpprest_transport>(cfg));
  }
  static void TearDownTestSuite() {
    // client_ is kept to the end of the process: cpprestsdk frees a client's connections on its
    // own pool thread, never joined, which races with OpenSSL's clean-up at exit (TSan says so).
  }
  void SetUp() override {
    ns_ = unique("runtime-events");
    client_->create(kube::resources::namespaces, {{"metadata", {{"name", ns_}}}});
  }
  void TearDown() override { client_->remove(kube::resources::namespaces, "", ns_); }

  kube::json config_map(const std::string& name) {
    return client_->create(kube::resources::config_maps, {{"apiVersion", "v1"},
                                                          {"kind", "ConfigMap"},
                                                          {"metadata", {{"name", name}, {"namespace", ns_}}},
                                                          {"data", {{"k", "v"}}}});
  }

  static kube::client* client_;
  std::string ns_;
};
kube::client* EventsIntegrationTest::client_ = nullptr;

const kube::json* find_reason(const kube::json& items, const std::string& reason) {
  for (const auto& item : items) {
    if (item.value("reason", "") == reason) return &item;
  }
  return nullptr;
}

TEST_F(EventsIntegrationTest, RecordsEventsAndFoldsRepeatsIntoOneSeries) {
  const kube::json cm = config_map("orders");
  std::vector<std::string> errors;
  std::mutex mu;
  const auto before = std::chrono::system_clock::now();
  {
    event_recorder events(*client_, {.reporting_controller = "datashare.io/integration-test",
                                     .reporting_instance = "it-" + std::to_string(::getpid()),
                                     .on_error = [&](const std::string& m) {
                                       std::lock_guard lock(mu);
                                       errors.push_back(m);
                                     }});
    events.record(reference_to(cm), event_type::normal, "Created", "Create", "config map orders created");
    for (int i = 0; i < 3; ++i) {
      events.record(reference_to(cm), event_type::warning, "SyncFailed", "Sync", "broker unreachable");
    }
    ASSERT_TRUE(events.flush(30s));
    EXPECT_EQ(events.stats().created, 2u);
    EXPECT_EQ(events.stats().patched, 2u);
  }
  EXPECT_TRUE(errors.empty()) << errors.front();

  const kube::json items = client_->list(kube::resources::events, ns_).items;
  ASSERT_EQ(items.size(), 2u) << items.dump(2);

  const kube::json* created = find_reason(items, "Created");
  ASSERT_NE(created, nullptr);
  EXPECT_EQ((*created)["type"], "Normal");
  EXPECT_EQ((*created)["action"], "Create");
  EXPECT_EQ((*created)["note"], "config map orders created");
  EXPECT_EQ((*created)["reportingController"], "datashare.io/integration-test");
  EXPECT_EQ((*created)["reportingInstance"], "it-" + std::to_string(::getpid()));
  EXPECT_FALSE(created->contains("series"));
  const kube::json& regarding = (*created)["regarding"];
  EXPECT_EQ(regarding["apiVersion"], "v1");
  EXPECT_EQ(regarding["kind"], "ConfigMap");
  EXPECT_EQ(regarding["namespace"], ns_);
  EXPECT_EQ(regarding["name"], "orders");
  EXPECT_EQ(regarding["uid"], cm["metadata"]["uid"]);
  EXPECT_EQ(regarding["resourceVersion"], cm["metadata"]["resourceVersion"]);
  // eventTime is stored with microseconds, and is now.
  const std::string event_time = (*created)["eventTime"];
  EXPECT_EQ(event_time.size(), std::string("2024-05-01T10:00:00.000000Z").size()) << event_time;
  auto when = parse_rfc3339(event_time);
  ASSERT_TRUE(when);
  EXPECT_GE(*when, std::chrono::floor<std::chrono::seconds>(before));
  EXPECT_LE(*when, std::chrono::system_clock::now() + 1s);

  const kube::json* failed = find_reason(items, "SyncFailed");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["type"], "Warning");
  ASSERT_TRUE(failed->contains("series")) << failed->dump(2);
  EXPECT_EQ((*failed)["series"]["count"], 3);
  auto first = parse_rfc3339((*failed)["eventTime"].get<std::string>());
  auto last = parse_rfc3339((*failed)["series"]["lastObservedTime"].get<std::string>());
  ASSERT_TRUE(first && last);
  EXPECT_GE(*last, *first);

  // What `kubectl describe configmap orders` reads: the core/v1 view of the same Events.
  const kube::json core = client_->list(kCoreEvents, ns_).items;
  ASSERT_EQ(core.size(), 2u);
  for (const auto& e : core) {
    EXPECT_EQ(e["involvedObject"]["name"], "orders");
    EXPECT_EQ(e["involvedObject"]["uid"], cm["metadata"]["uid"]);
  }
}

TEST_F(EventsIntegrationTest, EventsAboutClusterScopedObjectsGoToTheDefaultNamespace) {
  const kube::json ns_object = client_->get(kube::resources::namespaces, "", ns_);
  const std::string reason = "Checked" + std::to_string(::getpid());
  event_recorder events(*client_,
                        {.reporting_controller = "datashare.io/integration-test", .reporting_instance = "it"});
  events.record(reference_to(ns_object, kube::resources::namespaces), event_type::normal, reason, "Check", "");
  ASSERT_TRUE(events.flush(30s));
  EXPECT_EQ(events.stats().created, 1u) << "failed: " << events.stats().failed;

  const kube::json items = client_->list(kube::resources::events, "default").items;
  const kube::json* e = find_reason(items, reason);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ((*e)["regarding"]["kind"], "Namespace");
  EXPECT_EQ((*e)["regarding"]["name"], ns_);
  client_->remove(kube::resources::events, "default", (*e)["metadata"]["name"]);
}

TEST_F(EventsIntegrationTest, FinalizerPatchesAreGuardedByResourceVersion) {
  constexpr const char* kMine = "datashare.io/cleanup";
  const kube::json cm = config_map("guarded");

  auto add = add_finalizer(cm, kMine);
  ASSERT_TRUE(add);
  const kube::json with = client_->merge_patch(kube::resources::config_maps, ns_, "guarded", *add);
  EXPECT_TRUE(has_finalizer(with, kMine));

  // A patch computed from the stale copy would replace the list: the server refuses it.
  auto stale = add_finalizer(cm, "someone.else/finalizer");
  ASSERT_TRUE(stale);
  try {
    client_->merge_patch(kube::resources::config_maps, ns_, "guarded", *stale);
    FAIL() << "a finalizer patch from a stale resourceVersion must conflict";
  } catch (const kube::api_error& e) {
    EXPECT_EQ(e.code(), kube::errc::conflict) << e.what();
  }

  // Deletion waits for the finalizer; removing it lets the deletion finish.
  client_->remove(kube::resources::config_maps, ns_, "guarded");
  const kube::json deleting = client_->get(kube::resources::config_maps, ns_, "guarded");
  EXPECT_TRUE(is_being_deleted(deleting));
  EXPECT_EQ(deleting["metadata"]["finalizers"], kube::json({kMine}));
  auto remove = remove_finalizer(deleting, kMine);
  ASSERT_TRUE(remove);
  client_->merge_patch(kube::resources::config_maps, ns_, "guarded", *remove);
  try {
    client_->get(kube::resources::config_maps, ns_, "guarded");
    FAIL() << "the object should be gone once its last finalizer is removed";
  } catch (const kube::api_error& e) {
    EXPECT_TRUE(kube::is_not_found(e)) << e.what();
  }
}

}  // namespace
}  // namespace datashare::runtime
