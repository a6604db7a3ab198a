#include "operator/runtime/controller.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>

#include "operator/kube/error.h"
#include "operator/kube/fake_transport.h"
#include "tests/support/eventually.h"

namespace datashare::runtime {
namespace {
using kube::json;

using datashare::testing::eventually;

double counter(prometheus::Registry& r, const std::string& name, const std::string& result = "") {
  for (const auto& family : r.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      bool match = result.empty();
      for (const auto& l : m.label) {
        if (l.name == "result" && l.value == result) match = true;
      }
      if (match) return family.type == prometheus::MetricType::Histogram ? m.histogram.sample_count : m.counter.value;
    }
  }
  return -1;
}

TEST(ControllerTest, MapsEachOutcomeToOneQueueOperationAndOneMetric) {
  manual_clock clock;
  prometheus::Registry registry;
  std::atomic<int> calls{0};
  std::mutex mu;
  std::vector<std::string> seen;
  controller c({.name = "widgets", .workers = 2, .time_source = &clock, .registry = &registry},
               [&](const request& r) -> reconcile_result {
                 ++calls;
                 {
                   std::lock_guard l(mu);
                   seen.push_back(r.key());
                 }
                 if (r.name == "fails") throw std::runtime_error("boom");
                 if (r.name == "periodic") return {.requeue_after = std::chrono::seconds(30)};
                 return {};
               });
  c.start();
  c.queue().add("ns/ok");
  c.queue().add("ns/fails");
  c.queue().add("ns/periodic");
  ASSERT_TRUE(eventually([&] { return calls == 3; }));
  // The metrics are recorded after the queue operation, the duration last: once three durations
  // are in, every outcome of the three is.
  ASSERT_TRUE(eventually([&] { return counter(registry, "controller_runtime_reconcile_time_seconds") == 3; }));
  EXPECT_EQ(counter(registry, "controller_runtime_reconcile_total", "success"), 1);
  EXPECT_EQ(counter(registry, "controller_runtime_reconcile_total", "requeue_after"), 1);
  EXPECT_EQ(counter(registry, "controller_runtime_reconcile_errors_total"), 1);
  EXPECT_EQ(counter(registry, "controller_runtime_reconcile_time_seconds"), 3);

  // The failure comes back after the first backoff step (5 ms), the periodic one after 30 s.
  clock.advance(std::chrono::milliseconds(5));
  ASSERT_TRUE(eventually([&] { return calls == 4; }));
  // Its second failure requeued it (before the clock moves on: a requeue made after the advance
  // below would wait for the next step of the backoff from then).
  ASSERT_TRUE(eventually([&] { return counter(registry, "controller_runtime_reconcile_errors_total") == 2; }));
  EXPECT_EQ(c.queue().num_requeues("ns/fails"), 2);
  clock.advance(std::chrono::seconds(30));
  ASSERT_TRUE(eventually([&] { return calls >= 6; }));
  std::lock_guard l(mu);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "ns/periodic"), 2);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "ns/ok"), 1) << "success forgets the key";
}

TEST(ControllerTest, ANamespaceBeingDeletedIsRetriedWithoutCountingAnError) {
  manual_clock clock;
  prometheus::Registry registry;
  std::atomic<int> calls{0};
  const auto terminating = kube::error_from_response(
      403,
      R"({"kind":"Status","status":"Failure","reason":"Forbidden","message":"unable to create new content in )"
      R"(namespace gone because it is being terminated","details":{"causes":[{"reason":"NamespaceTerminating"}]},)"
      R"("code":403})",
      "POST /api/v1/namespaces/gone/configmaps");
  const auto rbac = kube::error_from_response(
      403, R"({"kind":"Status","reason":"Forbidden","message":"User \"u\" cannot create","code":403})", "POST /x");
  controller c({.name = "widgets", .workers = 1, .time_source = &clock, .registry = &registry},
               [&](const request& r) -> reconcile_result {
                 ++calls;
                 if (r.ns == "gone") throw terminating;
                 throw rbac;
               });
  c.start();
  c.queue().add("gone/a");
  ASSERT_TRUE(eventually([&] { return counter(registry, "controller_runtime_reconcile_total", "requeue") == 1; }));
  EXPECT_LE(counter(registry, "controller_runtime_reconcile_errors_total"), 0) << "no error was counted";
  // Retried with the backoff all the same.
  clock.advance(std::chrono::milliseconds(5));
  ASSERT_TRUE(eventually([&] { return calls == 2; }));
  // Any other refusal is an error.
  c.queue().add("ns/b");
  ASSERT_TRUE(eventually([&] { return counter(registry, "controller_runtime_reconcile_errors_total") == 1; }));
  EXPECT_TRUE(c.stop(std::chrono::seconds(10)));
}

TEST(ControllerTest, NeverReconcilesOneKeyTwiceAtOnce) {
  std::mutex mu;
  std::set<std::string> running;
  std::atomic<bool> overlap{false};
  std::atomic<int> done{0};
  controller c({.name = "stress", .workers = 4}, [&](const request& r) -> reconcile_result {
    {
      std::lock_guard l(mu);
      if (!running.insert(r.key()).second) overlap = true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    {
      std::lock_guard l(mu);
      running.erase(r.key());
    }
    ++done;
    return {};
  });
  c.start();
  for (int i = 0; i < 2000; ++i) c.queue().add("ns/k" + std::to_string(i % 7));
  ASSERT_TRUE(eventually([&] { return c.queue().len() == 0 && done > 0; }));
  EXPECT_TRUE(c.stop(std::chrono::seconds(10)));
  EXPECT_FALSE(overlap);
}

TEST(ControllerTest, StopWaitsForInFlightReconcilesAndTakesNoMore) {
  std::atomic<bool> entered{false}, release{false}, finished{false};
  std::atomic<int> calls{0};
  controller c({.name = "drain"}, [&](const request&) -> reconcile_result {
    ++calls;
    entered = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    finished = true;
    return {};
  });
  c.start();
  c.queue().add("a/1");
  ASSERT_TRUE(eventually([&] { return entered.load(); }));
  c.queue().add("a/2");
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    release = true;
  });
  EXPECT_TRUE(c.stop(std::chrono::seconds(10)));
  releaser.join();
  EXPECT_TRUE(finished);
  EXPECT_EQ(calls, 1) << "nothing new starts once stop() was called";
}

TEST(ControllerTest, OwnedAndMappedWatchesEnqueueTheRightKeys) {
  auto transport = std::make_shared<kube::testing::fake_transport>();
  kube::client client(transport, {.sleep = [](std::chrono::milliseconds) {}});
  auto list_of = [](json items) {
    return json{{"metadata", {{"resourceVersion", "1"}}}, {"items", std::move(items)}}.dump();
  };
  json owned = {{"metadata",
                 {{"name", "cm"},
                  {"namespace", "a"},
                  {"resourceVersion", "1"},
                  {"ownerReferences", json::array({{{"kind", "Widget"}, {"name", "w1"}, {"controller", true}},
                                                   {{"kind", "Widget"}, {"name", "w2"}, {"controller", false}},
                                                   {{"kind", "Other"}, {"name", "o"}, {"controller", true}}})}}}};
  json related = {{"metadata", {{"name", "product"}, {"namespace", "b"}, {"resourceVersion", "1"}}}};
  transport->push({200, list_of(json::array({owned})), {}, {}, false, false, "/configmaps?"});
  transport->push({200, list_of(json::array({related})), {}, {}, false, false, "/secrets?"});
  informer owned_inf(client, {.kind = kube::resources::config_maps, .ns = "a"});
  std::mutex mu;
  std::set<std::string> keys;
  controller c({.name = "owner"}, [&](const request& r) -> reconcile_result {
    std::lock_guard l(mu);
    keys.insert(r.key());
    return {};
  });
  c.watch_owned(owned_inf, "Widget");
  informer related_inf(client, {.kind = kube::resources::secrets, .ns = "b"});
  c.watch_mapped(related_inf,
                 [](const json& o) { return std::vector<std::string>{"x/policy-of-" + kube::name_of(o)}; });
  c.start();
  owned_inf.start();
  ASSERT_TRUE(owned_inf.wait_for_sync(std::chrono::seconds(10)));
  related_inf.start();
  ASSERT_TRUE(related_inf.wait_for_sync(std::chrono::seconds(10)));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(mu);
    return keys.size() == 2;
  }));
  std::lock_guard l(mu);
  EXPECT_EQ(keys, (std::set<std::string>{"a/w1", "x/policy-of-product"}));
}

TEST(ControllerTest, ChangedOutsideStatusIgnoresStatusAndServerBookkeeping) {
  json base = {{"apiVersion", "v1"},
               {"kind", "Widget"},
               {"metadata", {{"name", "w"}, {"resourceVersion", "1"}, {"generation", 1}, {"labels", {{"a", "b"}}}}},
               {"spec", {{"size", 1}}},
               {"status", {{"ready", false}}}};
  json status_only = base;
  status_only["status"]["ready"] = true;
  status_only["metadata"]["resourceVersion"] = "2";
  status_only["metadata"]["managedFields"] = json::array({{{"manager", "x"}}});
  EXPECT_FALSE(changed_outside_status(base, status_only));
  EXPECT_FALSE(changed_outside_status(base, base));

  json spec = base;
  spec["spec"]["size"] = 2;
  EXPECT_TRUE(changed_outside_status(base, spec));
  json label = base;
  label["metadata"]["labels"]["a"] = "c";
  EXPECT_TRUE(changed_outside_status(base, label));
  json deleting = base;
  deleting["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z";
  EXPECT_TRUE(changed_outside_status(base, deleting)) << "a key added to metadata";
  json no_labels = base;
  no_labels["metadata"].erase("labels");
  EXPECT_TRUE(changed_outside_status(base, no_labels)) << "a key removed from metadata";
  json data = base;  // a kind without spec or generation: a ConfigMap's data
  data["data"] = {{"k", "v"}};
  EXPECT_TRUE(changed_outside_status(base, data));
  EXPECT_TRUE(changed_outside_status(data, base));
}

TEST(ControllerTest, SpecOrDeletionChangedIgnoresMetadataWritesButNotDeletion) {
  json base = {{"apiVersion", "v1"},
               {"kind", "Widget"},
               {"metadata", {{"name", "w"}, {"resourceVersion", "1"}, {"generation", 1}}},
               {"spec", {{"size", 1}}},
               {"status", {{"ready", false}}}};
  EXPECT_FALSE(spec_or_deletion_changed(base, base));
  json finalized = base;
  finalized["metadata"]["finalizers"] = json::array({"datashare.io/finalizer"});
  finalized["metadata"]["resourceVersion"] = "2";
  finalized["status"]["ready"] = true;
  EXPECT_FALSE(spec_or_deletion_changed(base, finalized)) << "a finalizer and a status write";
  json spec = base;
  spec["spec"]["size"] = 2;
  EXPECT_TRUE(spec_or_deletion_changed(base, spec));
  json no_spec = base;
  no_spec.erase("spec");
  EXPECT_TRUE(spec_or_deletion_changed(base, no_spec));
  EXPECT_TRUE(spec_or_deletion_changed(no_spec, base));
  json deleting = finalized;
  deleting["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z";
  EXPECT_TRUE(spec_or_deletion_changed(finalized, deleting));
  json data = no_spec;  // a kind without spec: a ConfigMap's data
  data["data"] = {{"k", "v"}};
  EXPECT_TRUE(spec_or_deletion_changed(no_spec, data));
  EXPECT_TRUE(spec_or_deletion_changed(data, no_spec));
  json relabeled = data;
  relabeled["metadata"]["labels"] = {{"a", "b"}};
  EXPECT_FALSE(spec_or_deletion_changed(data, relabeled));
}

TEST(ControllerTest, AnUpdateFilterDropsStatusOnlyUpdatesButNotOthers) {
  auto transport = std::make_shared<kube::testing::fake_transport>();
  kube::client client(transport, {.sleep = [](std::chrono::milliseconds) {}});
  auto object = [](const std::string& name, const std::string& rv, int size, bool ready) {
    return json{{"apiVersion", "v1"},
                {"kind", "ConfigMap"},
                {"metadata", {{"name", name}, {"namespace", "a"}, {"resourceVersion", rv}}},
                {"spec", {{"size", size}}},
                {"status", {{"ready", ready}}}};
  };
  auto event = [](const char* type, const json& o) { return json{{"type", type}, {"object", o}}.dump(); };
  transport->push({200,
                   json{{"metadata", {{"resourceVersion", "1"}}},
                        {"items", json::array({object("w1", "1", 1, false), object("w2", "1", 1, false)})}}
                       .dump(),
                   {},
                   {},
                   false,
                   false,
                   "/configmaps?"});
  informer inf(client, {.kind = kube::resources::config_maps, .ns = "a"});
  std::mutex mu;
  std::vector<std::string> reconciled;
  controller c({.name = "filtered"}, [&](const request& r) -> reconcile_result {
    std::lock_guard l(mu);
    reconciled.push_back(r.key());
    return {};
  });
  c.watch_for(inf, changed_outside_status);
  c.start();
  inf.start();
  ASSERT_TRUE(inf.wait_for_sync(std::chrono::seconds(10)));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(mu);
    return reconciled.size() == 2;  // the adds of the initial list
  }));
  // w1: status only (as a controller's own status write); w2: spec changed. Then an add of w3:
  // one worker and a FIFO queue, so once w3 is reconciled every event before it was handled.
  transport->push({200,
                   "",
                   {},
                   {event("MODIFIED", object("w1", "2", 1, true)), event("MODIFIED", object("w2", "3", 2, false)),
                    event("ADDED", object("w3", "4", 1, false))},
                   false,
                   true,
                   "watch=true"});
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(mu);
    return std::find(reconciled.begin(), reconciled.end(), "a/w3") != reconciled.end();
  }));
  std::lock_guard l(mu);
  EXPECT_EQ(std::count(reconciled.begin(), reconciled.end(), "a/w1"), 1)
      << "a status-only update woke w1: " << ::testing::PrintToString(reconciled);
  EXPECT_EQ(std::count(reconciled.begin(), reconciled.end(), "a/w2"), 2) << "a spec update did not wake w2";
}

TEST(ControllerTest, RequestKeysRoundTrip) {
  EXPECT_EQ(request::from_key("ns/name").ns, "ns");
  EXPECT_EQ(request::from_key("ns/name").name, "name");
  EXPECT_EQ(request::from_key("cluster-scoped").ns, "");
  EXPECT_EQ((request{"a", "b"}).key(), "a/b");
}

}  // namespace
}  // namespace datashare::runtime
