#include "operator/kube/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "operator/kube/fake_transport.h"
#include "operator/kube/json_access.h"

namespace datashare::kube {
namespace {
using testing::fake_transport;
using ::testing::HasSubstr;

class client_test : public ::testing::Test {
 protected:
  client_test() {
    client_options options;
    options.sleep = [this](std::chrono::milliseconds d) { sleeps_.push_back(d); };
    options.on_request = [this](const std::string& method, int code) {
      calls_.push_back(method + " " + std::to_string(code));
    };
    client_ = std::make_unique<client>(transport_, options);
  }

  std::shared_ptr<fake_transport> transport_ = std::make_shared<fake_transport>();
  std::vector<std::chrono::milliseconds> sleeps_;
  std::vector<std::string> calls_;
  std::unique_ptr<client> client_;
};

constexpr const char* kInvalidStatus = R"({"kind":"Status","apiVersion":"v1","status":"Failure",
  "message":"Deployment.apps \"x\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
  "reason":"Invalid","details":{"name":"x","group":"apps","kind":"Deployment","causes":[
  {"reason":"FieldValueInvalid","message":"Invalid value: -1: must be greater than or equal to 0","field":"spec.replicas"}]},
  "code":422})";

TEST_F(client_test, BuildsPathsForCoreGroupedNamespacedAndClusterScopedKinds) {
  EXPECT_EQ(resources::config_maps.object_path("a", "b"), "/api/v1/namespaces/a/configmaps/b");
  EXPECT_EQ(resources::config_maps.collection_path(""), "/api/v1/configmaps");
  EXPECT_EQ(resources::leases.object_path("kube-system", "x"),
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x");
  EXPECT_EQ(resources::namespaces.object_path("ignored", "n"), "/api/v1/namespaces/n");
  EXPECT_EQ(url_escape("app in (a,b),!x"), "app%20in%20%28a%2Cb%29%2C%21x");
}

TEST_F(client_test, MapsStatusObjectsToErrorCodes) {
  struct row {
    int status;
    std::string reason;
    errc code;
  };
  for (const auto& r : std::vector<row>{{404, "NotFound", errc::not_found},
                                        {409, "AlreadyExists", errc::already_exists},
                                        {409, "Conflict", errc::conflict},
                                        {410, "Expired", errc::gone},
                                        {410, "Gone", errc::gone},
                                        {403, "Forbidden", errc::forbidden},
                                        {401, "Unauthorized", errc::unauthorized},
                                        {400, "BadRequest", errc::bad_request},
                                        {500, "InternalError", errc::server_error}}) {
    api_error e = error_from_response(
        r.status,
        R"({"kind":"Status","reason":")" + r.reason + R"(","message":"m","code":)" + std::to_string(r.status) + "}",
        "GET /x");
    EXPECT_EQ(e.code(), r.code) << r.reason;
    EXPECT_EQ(e.http_status(), r.status);
  }
  // Without a Status body the HTTP status decides.
  EXPECT_EQ(error_from_response(410, "gone", "GET /x").code(), errc::gone);
  EXPECT_EQ(error_from_response(502, "<html>", "GET /x").code(), errc::server_error);
}

TEST(ErrorTest, NamespaceTerminatingIsTheForbiddenWithThatCause) {
  // The Status body a kube-apiserver sends for a create in a namespace being deleted.
  const std::string terminating =
      R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"configmaps \"x\" is forbidden: )"
      R"(unable to create new content in namespace a because it is being terminated","reason":"Forbidden",)"
      R"("details":{"name":"x","kind":"configmaps","causes":[{"reason":"NamespaceTerminating",)"
      R"("message":"namespace a is being terminated","field":"metadata.namespace"}]},"code":403})";
  EXPECT_TRUE(is_namespace_terminating(error_from_response(403, terminating, "POST /x")));
  // An RBAC refusal is a 403 too, without that cause.
  const std::string rbac =
      R"({"kind":"Status","status":"Failure","message":"configmaps is forbidden: User \"u\" cannot create )"
      R"(resource \"configmaps\"","reason":"Forbidden","details":{"kind":"configmaps"},"code":403})";
  EXPECT_FALSE(is_namespace_terminating(error_from_response(403, rbac, "POST /x")));
  EXPECT_FALSE(is_namespace_terminating(error_from_response(403, "forbidden", "POST /x")));
}

TEST_F(client_test, InvalidCarriesTheFieldCauses) {
  transport_->push({422, kInvalidStatus});
  try {
    client_->create(resources::deployments, {{"metadata", {{"name", "x"}, {"namespace", "a"}}}});
    FAIL() << "expected api_error";
  } catch (const api_error& e) {
    EXPECT_EQ(e.code(), errc::invalid);
    ASSERT_EQ(e.causes().size(), 1u);
    EXPECT_EQ(e.causes()[0].field, "spec.replicas");
    EXPECT_THAT(e.what(), HasSubstr("POST /apis/apps/v1/namespaces/a/deployments"));
  }
  EXPECT_TRUE(sleeps_.empty()) << "a rejected write is not retried";
}

TEST_F(client_test, RetriesTooManyRequestsForWritesHonouringRetryAfter) {
  transport_->push({429, R"({"kind":"Status","reason":"TooManyRequests","code":429})", {{"retry-after", "3"}}});
  transport_->push({201, R"({"metadata":{"name":"x","namespace":"a","resourceVersion":"7"}})"});
  json created = client_->create(resources::config_maps, {{"metadata", {{"name", "x"}, {"namespace", "a"}}}});
  EXPECT_EQ(created["metadata"]["resourceVersion"], "7");
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_EQ(sleeps_[0], std::chrono::milliseconds(3000));
  EXPECT_EQ(calls_, (std::vector<std::string>{"POST 429", "POST 201"}));
}

TEST_F(client_test, RetriesTransportAndServerErrorsForReadsOnlyWithGrowingBackoff) {
  transport_->push({.transport_failure = true});
  transport_->push({503, "unavailable"});
  transport_->push({200, R"({"metadata":{"name":"x"}})"});
  EXPECT_EQ(client_->get(resources::config_maps, "a", "x")["metadata"]["name"], "x");
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_LE(sleeps_[0], std::chrono::milliseconds(100));
  EXPECT_GE(sleeps_[1], std::chrono::milliseconds(100));
  EXPECT_LE(sleeps_[1], std::chrono::milliseconds(200));

  sleeps_.clear();
  transport_->push({.transport_failure = true});
  EXPECT_THROW(client_->create(resources::config_maps, {{"metadata", {{"name", "y"}, {"namespace", "a"}}}}), api_error);
  EXPECT_TRUE(sleeps_.empty()) << "a write that may have been applied is not sent again";
}

TEST_F(client_test, GivesUpAfterMaxAttempts) {
  for (int i = 0; i < 5; ++i) transport_->push({503, "unavailable"});
  try {
    client_->get(resources::config_maps, "a", "x");
    FAIL();
  } catch (const api_error& e) {
    EXPECT_EQ(e.code(), errc::server_error);
    EXPECT_TRUE(e.retryable());
  }
  EXPECT_EQ(sleeps_.size(), 4u);
}

TEST_F(client_test, ListAllFollowsContinueTokens) {
  transport_->push({200, R"({"metadata":{"resourceVersion":"10","continue":"c1"},"items":[{"n":1},{"n":2}]})"});
  transport_->push({200, R"({"metadata":{"resourceVersion":"10"},"items":[{"n":3}]})"});
  list_page page = client_->list_all(resources::config_maps, "a", {.label_selector = "app=x", .limit = 2});
  EXPECT_EQ(page.items.size(), 3u);
  EXPECT_EQ(page.resource_version, "10");
  auto reqs = transport_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].target, "/api/v1/namespaces/a/configmaps?labelSelector=app%3Dx&limit=2");
  EXPECT_EQ(reqs[1].target, "/api/v1/namespaces/a/configmaps?labelSelector=app%3Dx&limit=2&continue=c1");
}

TEST_F(client_test, ListAllRestartsWhenTheContinueTokenExpires) {
  transport_->push({200, R"({"metadata":{"resourceVersion":"10","continue":"c1"},"items":[{"n":1}]})"});
  transport_->push({410, R"({"kind":"Status","reason":"Expired","code":410})"});
  transport_->push({200, R"({"metadata":{"resourceVersion":"20"},"items":[{"n":1},{"n":2}]})"});
  list_page page = client_->list_all(resources::config_maps, "a", {.limit = 1});
  EXPECT_EQ(page.items.size(), 2u) << "the partial first attempt is discarded";
  EXPECT_EQ(page.resource_version, "20");
}

TEST_F(client_test, ServerSideApplySendsTheFieldManagerAndForce) {
  transport_->push({200, R"({"metadata":{"name":"x"}})"});
  client_->apply(resources::config_maps, {{"metadata", {{"name", "x"}, {"namespace", "a"}}}},
                 {.field_manager = "datashare", .force = true});
  auto req = transport_->requests().at(0);
  EXPECT_EQ(req.method, "PATCH");
  EXPECT_EQ(req.content_type, "application/apply-patch+yaml");
  EXPECT_EQ(req.target, "/api/v1/namespaces/a/configmaps/x?fieldManager=datashare&force=true");
  EXPECT_THROW(client_->apply(resources::config_maps, {{"metadata", {{"name", "x"}}}}, {}), std::invalid_argument);
}

TEST_F(client_test, DeleteSendsPropagationAndPreconditionsAndToleratesNotFound) {
  transport_->push({200, "{}"});
  transport_->push({404, R"({"kind":"Status","reason":"NotFound","code":404})"});
  EXPECT_TRUE(client_->remove(resources::config_maps, "a", "x",
                              {.propagation_policy = "Foreground", .precondition_uid = "u1"}));
  EXPECT_FALSE(client_->remove(resources::config_maps, "a", "x"));
  auto body = json::parse(transport_->requests().at(0).body);
  EXPECT_EQ(body["propagationPolicy"], "Foreground");
  EXPECT_EQ(body["preconditions"]["uid"], "u1");
}

TEST_F(client_test, WatchDecodesEventsAndEndsOnAnErrorEvent) {
  transport_->push(
      {.lines = {
           R"({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"2"}}})",
           R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"5"}}})",
           R"({"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"6"}}})",
           R"({"type":"ERROR","object":{"kind":"Status","reason":"Expired","code":410,"message":"too old resource version"}})"}});
  std::vector<watch_event_type> seen;
  std::stop_source stop;
  try {
    client_->watch(
        resources::config_maps, "a", {.resource_version = "1", .timeout_seconds = 300},
        [&](watch_event&& e) {
          seen.push_back(e.type);
          return true;
        },
        stop.get_token());
    FAIL() << "an ERROR event ends the watch with its Status";
  } catch (const api_error& e) {
    EXPECT_TRUE(is_gone(e));
  }
  EXPECT_EQ(seen, (std::vector<watch_event_type>{watch_event_type::added, watch_event_type::bookmark,
                                                 watch_event_type::deleted}));
  EXPECT_EQ(transport_->requests().at(0).target,
            "/api/v1/namespaces/a/configmaps?watch=true&resourceVersion=1&allowWatchBookmarks=true&timeoutSeconds=300");
}

TEST_F(client_test, WatchRejectsLinesThatAreNotEvents) {
  transport_->push({.lines = {"not json"}});
  std::stop_source stop;
  EXPECT_THROW(client_->watch(
                   resources::config_maps, "", {}, [](watch_event&&) { return true; }, stop.get_token()),
               api_error);
}

// Found with fuzz/fuzz_watch_stream: members of the wrong type in an ERROR event's Status threw
// nlohmann's type_error out of watch() (and so out of the informer's thread, ending the process).
TEST_F(client_test, WatchErrorEventWithMistypedStatusIsAnApiError) {
  for (const char* line : {R"({"type":"ERROR","object":{"code":"410"}})",
                           R"({"type":"ERROR","object":{"kind":7,"code":1e40,"reason":[]}})",
                           R"({"type":"ERROR","object":{"kind":"Status","reason":{},"message":1,"code":410,)"
                           R"("details":{"causes":[{"reason":2,"field":null}]}}})",
                           R"({"type":"ERROR","object":"gone"})"}) {
    transport_->push({.lines = {line}});
    std::stop_source stop;
    EXPECT_THROW(client_->watch(
                     resources::config_maps, "", {}, [](watch_event&&) { return true; }, stop.get_token()),
                 api_error)
        << line;
  }
}

// Found with fuzz/fuzz_watch_stream: an event nesting 100000 arrays overflowed the stack when the
// informer's cache packed it (to_msgpack recurses per level). Deep JSON is refused up front.
TEST_F(client_test, DeeplyNestedJsonIsRefusedNotRecursedInto) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  transport_->push({.lines = {R"({"type":"ADDED","object":{"metadata":{"name":"a"},"data":)" + deep + "}}"}});
  std::stop_source stop;
  EXPECT_THROW(client_->watch(
                   resources::config_maps, "", {}, [](watch_event&&) { return true; }, stop.get_token()),
               api_error);
  transport_->push({200, R"({"kind":"ConfigMap","data":)" + deep + "}"});
  EXPECT_THROW(client_->get(resources::config_maps, "a", "b"), api_error);
  // Brackets inside strings do not count, and ordinary objects pass.
  EXPECT_FALSE(nested_deeper_than(R"({"a":"[[[[[[[[[[\"[[[[[["})", 3));
  EXPECT_TRUE(nested_deeper_than(R"({"a":[[[1]]]})", 3));
}

TEST_F(client_test, ObjectKeysIgnoreMistypedMetadata) {
  EXPECT_EQ(object_key(json::parse(R"({"metadata":{"name":5,"namespace":["a"]}})")), "");
  EXPECT_EQ(object_key(json::parse(R"({"metadata":{"name":"n","namespace":"a"}})")), "a/n");
}

TEST_F(client_test, WatchRequestRejectedWithGone) {
  transport_->push({410, R"({"kind":"Status","reason":"Expired","code":410})"});
  std::stop_source stop;
  try {
    client_->watch(
        resources::config_maps, "", {.resource_version = "1"}, [](watch_event&&) { return true; }, stop.get_token());
    FAIL();
  } catch (const api_error& e) {
    EXPECT_TRUE(is_gone(e));
  }
}

}  // namespace
}  // namespace datashare::kube
