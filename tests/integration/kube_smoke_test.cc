// The toolchain talks to the real API server: cpprestsdk over TLS with the client certificate
// of the generated kubeconfig reads /version and creates, reads and deletes a ConfigMap.
#include <cpprest/http_client.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "operator/kube/config.h"
#include "operator/kube/tls.h"
#include "tests/support/cluster_env.h"

namespace datashare {
namespace {

using web::http::methods;
using web::http::status_codes;
using json = nlohmann::json;

class KubeSmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = kube::load_kubeconfig({testing::require_env("KUBECONFIG")});
    client_ = std::make_unique<web::http::client::http_client>(cfg_.server, kube::http_client_config_for(cfg_));
  }

  // Sends a request and returns (status, parsed body).
  std::pair<int, json> call(const web::http::method& method, const std::string& path, const json* body = nullptr) {
    web::http::http_request req(method);
    req.set_request_uri(path);
    if (auto auth = kube::authorization_header(cfg_); !auth.empty()) req.headers().add("Authorization", auth);
    if (body != nullptr) req.set_body(body->dump(), "application/json");
    auto resp = client_->request(req).get();
    auto text = resp.extract_utf8string(true).get();
    return {resp.status_code(), text.empty() ? json() : json::parse(text)};
  }

  kube::rest_config cfg_;
  std::unique_ptr<web::http::client::http_client> client_;
};

TEST_F(KubeSmokeTest, ReadsServerVersion) {
  auto [status, body] = call(methods::GET, "/version");
  ASSERT_EQ(status, status_codes::OK) << body.dump();
  EXPECT_EQ(body.at("major").get<std::string>(), "1");
  EXPECT_FALSE(body.at("gitVersion").get<std::string>().empty());
}

TEST_F(KubeSmokeTest, CreatesReadsAndDeletesAConfigMap) {
  const std::string name = "smoke-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  const std::string collection = "/api/v1/namespaces/default/configmaps";
  json cm = {{"apiVersion", "v1"},
             {"kind", "ConfigMap"},
             {"metadata", {{"name", name}, {"labels", {{"app.kubernetes.io/part-of", "datashare-tests"}}}}},
             {"data", {{"greeting", "hello"}}}};

  auto [created, created_body] = call(methods::POST, collection, &cm);
  ASSERT_EQ(created, status_codes::Created) << created_body.dump();
  EXPECT_FALSE(created_body["metadata"]["uid"].get<std::string>().empty());

  auto [dup, dup_body] = call(methods::POST, collection, &cm);
  EXPECT_EQ(dup, status_codes::Conflict);
  EXPECT_EQ(dup_body["reason"], "AlreadyExists");

  auto [got, got_body] = call(methods::GET, collection + "/" + name);
  ASSERT_EQ(got, status_codes::OK) << got_body.dump();
  EXPECT_EQ(got_body["data"]["greeting"], "hello");

  auto [deleted, deleted_body] = call(methods::DEL, collection + "/" + name);
  ASSERT_EQ(deleted, status_codes::OK) << deleted_body.dump();

  auto [gone, gone_body] = call(methods::GET, collection + "/" + name);
  EXPECT_EQ(gone, status_codes::NotFound);
  EXPECT_EQ(gone_body["reason"], "NotFound");
}

TEST_F(KubeSmokeTest, AnUnauthenticatedClientIsRejected) {
  kube::rest_config anonymous = cfg_;
  anonymous.tls.client_cert_pem.clear();
  anonymous.tls.client_key_pem.clear();
  web::http::client::http_client client(anonymous.server, kube::http_client_config_for(anonymous));
  auto resp = client.request(methods::GET, "/api/v1/namespaces/default/configmaps").get();
  // Anonymous requests are authenticated as system:anonymous and denied by RBAC.
  EXPECT_EQ(resp.status_code(), status_codes::Forbidden);
}

}  // namespace
}  // namespace datashare
