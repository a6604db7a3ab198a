// The client against the real API server: CRUD on core kinds and CRDs, optimistic concurrency,
// server-side apply with a field-manager conflict, pagination, errors with field causes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "operator/kube/client.h"
#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"
#include "tests/support/cluster_env.h"

namespace datashare::kube {
namespace {
using ::testing::HasSubstr;

std::string unique(const std::string& prefix) {
  return prefix + "-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000000);
}

class ClientIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto cfg = load_kubeconfig({datashare::testing::require_env("KUBECONFIG")});
    client_ = new client(std::make_shared<cpprest_transport>(cfg));
  }
  static void TearDownTestSuite() {
    delete client_;
    client_ = nullptr;
  }

  void SetUp() override {
    ns_ = unique("kube-client");
    client_->create(resources::namespaces, {{"metadata", {{"name", ns_}}}});
  }
  void TearDown() override {
    try {
      client_->remove(resources::namespaces, "", ns_);
    } catch (const api_error& e) {
      // A test may have started the deletion already (409 while it terminates, 404 once gone).
      if (!is_conflict(e) && !is_not_found(e)) throw;
    }
  }

  json config_map(const std::string& name, json data = {{"k", "v"}}) {
    return {{"apiVersion", "v1"},
            {"kind", "ConfigMap"},
            {"metadata", {{"name", name}, {"namespace", ns_}}},
            {"data", std::move(data)}};
  }

  static client* client_;
  std::string ns_;
};
client* ClientIntegrationTest::client_ = nullptr;

TEST_F(ClientIntegrationTest, CreateGetUpdateDeleteWithOptimisticConcurrency) {
  json created = client_->create(resources::config_maps, config_map("a"));
  EXPECT_THROW(
      {
        try {
          client_->create(resources::config_maps, config_map("a"));
        } catch (const api_error& e) {
          EXPECT_TRUE(is_already_exists(e));
          throw;
        }
      },
      api_error);

  json stale = created;
  json fresh = client_->get(resources::config_maps, ns_, "a");
  fresh["data"]["k"] = "v2";
  json updated = client_->update(resources::config_maps, fresh);
  EXPECT_NE(updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);

  stale["data"]["k"] = "lost update";
  try {
    client_->update(resources::config_maps, stale);
    FAIL() << "an update from a stale resourceVersion must be refused";
  } catch (const api_error& e) {
    EXPECT_EQ(e.code(), errc::conflict);
  }
  EXPECT_EQ(client_->get(resources::config_maps, ns_, "a")["data"]["k"], "v2");

  json patched = client_->merge_patch(resources::config_maps, ns_, "a", {{"data", {{"extra", "1"}}}});
  EXPECT_EQ(patched["data"]["extra"], "1");
  EXPECT_EQ(patched["data"]["k"], "v2");

  EXPECT_TRUE(client_->remove(resources::config_maps, ns_, "a", {.propagation_policy = "Background"}));
  EXPECT_FALSE(client_->remove(resources::config_maps, ns_, "a"));
  try {
    client_->get(resources::config_maps, ns_, "a");
    FAIL();
  } catch (const api_error& e) {
    EXPECT_TRUE(is_not_found(e));
  }
}

TEST_F(ClientIntegrationTest, InvalidObjectsAreRejectedWithTheFieldPath) {
  json bad = {{"apiVersion", "apps/v1"},
              {"kind", "Deployment"},
              {"metadata", {{"name", "bad"}, {"namespace", ns_}}},
              {"spec",
               {{"replicas", -1},
                {"selector", {{"matchLabels", {{"app", "x"}}}}},
                {"template",
                 {{"metadata", {{"labels", {{"app", "x"}}}}},
                  {"spec", {{"containers", {{{"name", "c"}, {"image", "i"}}}}}}}}}}};
  try {
    client_->create(resources::deployments, bad);
    FAIL();
  } catch (const api_error& e) {
    EXPECT_EQ(e.code(), errc::invalid);
    ASSERT_FALSE(e.causes().empty());
    EXPECT_EQ(e.causes()[0].field, "spec.replicas");
  }
}

TEST_F(ClientIntegrationTest, CreatesInANamespaceBeingDeletedAreTold) {
  // A finalizer keeps the namespace in Terminating until the test lets it go.
  json held = config_map("held");
  held["metadata"]["finalizers"] = {"datashare.io/test-hold"};
  client_->create(resources::config_maps, held);
  client_->remove(resources::namespaces, "", ns_);
  try {
    client_->create(resources::config_maps, config_map("late"));
    ADD_FAILURE() << "a create in a terminating namespace was accepted";
  } catch (const api_error& e) {
    EXPECT_TRUE(is_namespace_terminating(e)) << e.what();
  }
  // Updates of what is there are still accepted: the finalizer goes, and the namespace with it.
  client_->merge_patch(resources::config_maps, ns_, "held", {{"metadata", {{"finalizers", nullptr}}}});
}

TEST_F(ClientIntegrationTest, ServerSideApplyOwnsFieldsAndReportsConflicts) {
  json intent = config_map("applied", {{"owned-by-a", "1"}});
  json first = client_->apply(resources::config_maps, intent, {.field_manager = "manager-a"});
  EXPECT_EQ(first["data"]["owned-by-a"], "1");
  // Applying the same intent again changes nothing.
  json again = client_->apply(resources::config_maps, intent, {.field_manager = "manager-a"});
  EXPECT_EQ(again["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);

  json rival = config_map("applied", {{"owned-by-a", "2"}});
  try {
    client_->apply(resources::config_maps, rival, {.field_manager = "manager-b"});
    FAIL() << "a second manager changing a field it does not own must conflict";
  } catch (const api_error& e) {
    EXPECT_EQ(e.code(), errc::conflict);
    EXPECT_THAT(e.message(), HasSubstr("manager-a"));
  }
  json forced = client_->apply(resources::config_maps, rival, {.field_manager = "manager-b", .force = true});
  EXPECT_EQ(forced["data"]["owned-by-a"], "2");

  // manager-a drops the field from its intent: it is removed only if manager-a still owns it,
  // and it no longer does, so manager-b's value stays.
  client_->apply(resources::config_maps, config_map("applied", json::object()), {.field_manager = "manager-a"});
  EXPECT_EQ(client_->get(resources::config_maps, ns_, "applied")["data"]["owned-by-a"], "2");
}

TEST_F(ClientIntegrationTest, ListPaginatesOver2000Objects) {
  constexpr int kCount = 2000;
  // Create in parallel on two threads: the API server is the bottleneck, not the client.
  auto create_range = [&](int from, int to) {
    for (int i = from; i < to; ++i) client_->create(resources::config_maps, config_map("cm-" + std::to_string(i)));
  };
  std::thread t1(create_range, 0, kCount / 2);
  create_range(kCount / 2, kCount);
  t1.join();

  list_page first = client_->list(resources::config_maps, ns_, {.limit = 500});
  EXPECT_EQ(first.items.size(), 500u);
  EXPECT_FALSE(first.continue_token.empty());

  list_page all = client_->list_all(resources::config_maps, ns_, {.limit = 300});
  std::set<std::string> names;
  for (const auto& item : all.items) names.insert(name_of(item));
  // kube-root-ca.crt is created in every namespace by the controller manager.
  names.erase("kube-root-ca.crt");
  EXPECT_EQ(names.size(), static_cast<size_t>(kCount));
  EXPECT_FALSE(all.resource_version.empty());
}

TEST_F(ClientIntegrationTest, WorksOnCustomResourcesNamespacedAndClusterScoped) {
  const std::string group = "it.datashare.io";
  auto crd = [&](const std::string& plural, const std::string& kind, const std::string& scope) {
    return json{
        {"apiVersion", "apiextensions.k8s.io/v1"},
        {"kind", "CustomResourceDefinition"},
        {"metadata", {{"name", plural + "." + group}}},
        {"spec",
         {{"group", group},
          {"scope", scope},
          {"names", {{"plural", plural}, {"singular", kind == "Widget" ? "widget" : "gadget"}, {"kind", kind}}},
          {"versions",
           {{{"name", "v1"},
             {"served", true},
             {"storage", true},
             {"subresources", {{"status", json::object()}}},
             {"schema",
              {{"openAPIV3Schema",
                {{"type", "object"},
                 {"properties",
                  {{"spec", {{"type", "object"}, {"properties", {{"size", {{"type", "integer"}}}}}}},
                   {"status", {{"type", "object"}, {"properties", {{"ready", {{"type", "boolean"}}}}}}}}}}}}}}}}}}};
  };
  client_->apply(resources::custom_resource_definitions, crd("widgets", "Widget", "Namespaced"),
                 {.field_manager = "it", .force = true});
  client_->apply(resources::custom_resource_definitions, crd("gadgets", "Gadget", "Cluster"),
                 {.field_manager = "it", .force = true});
  const resource_kind widgets{group, "v1", "widgets", "Widget", true};
  const resource_kind gadgets{group, "v1", "gadgets", "Gadget", false};

  // A new CRD takes a moment to be served.
  json w = {{"apiVersion", group + "/v1"},
            {"kind", "Widget"},
            {"metadata", {{"name", "w"}, {"namespace", ns_}}},
            {"spec", {{"size", 3}}}};
  for (int i = 0;; ++i) {
    try {
      client_->create(widgets, w);
      break;
    } catch (const api_error& e) {
      if (!is_not_found(e) || i > 100) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  json with_status = client_->get(widgets, ns_, "w");
  with_status["status"] = {{"ready", true}};
  client_->update_status(widgets, with_status);
  json got = client_->get(widgets, ns_, "w");
  EXPECT_EQ(got["status"]["ready"], true);
  EXPECT_EQ(got["spec"]["size"], 3);

  // Status goes through its subresource only: a spec write does not change it and vice versa.
  client_->apply_status(widgets,
                        {{"apiVersion", group + "/v1"},
                         {"kind", "Widget"},
                         {"metadata", {{"name", "w"}, {"namespace", ns_}}},
                         {"status", {{"ready", false}}}},
                        {.field_manager = "it-status", .force = true});
  EXPECT_EQ(client_->get(widgets, ns_, "w")["status"]["ready"], false);

  json g = {{"apiVersion", group + "/v1"}, {"kind", "Gadget"}, {"metadata", {{"name", unique("g")}}}};
  for (int i = 0;; ++i) {
    try {
      client_->create(gadgets, g);
      break;
    } catch (const api_error& e) {
      if (!is_not_found(e) || i > 100) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_EQ(client_->get(gadgets, "", name_of(g))["kind"], "Gadget");
  EXPECT_TRUE(client_->remove(gadgets, "", name_of(g)));
}

}  // namespace
}  // namespace datashare::kube
