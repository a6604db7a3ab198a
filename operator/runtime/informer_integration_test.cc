// The informer against the real API server: it follows changes, resumes a cut watch from its
// resourceVersion without re-listing, and after a 410 (the version was compacted away while it
// was disconnected, and the API server restarted) re-lists into a correct cache.
#include <cpprest/http_client.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>

#include "operator/kube/config.h"
#include "operator/kube/http_cpprest.h"
#include "operator/runtime/informer.h"
#include "tests/support/cluster_env.h"
#include "tests/support/eventually.h"
#include "tests/support/tcp_proxy.h"

namespace datashare::runtime {
namespace {
using kube::json;

// The API server, a restart included, may take a while on a busy machine.
template <typename F>
bool eventually(F f) {
  return datashare::testing::eventually(f, std::chrono::seconds(60), std::chrono::milliseconds(20));
}

class InformerIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = kube::load_kubeconfig({datashare::testing::require_env("KUBECONFIG")});
    client_ = std::make_unique<kube::client>(std::make_shared<kube::cpprest_transport>(cfg_));
    ns_ = "informer-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000000);
    client_->create(kube::resources::namespaces, {{"metadata", {{"name", ns_}}}});
  }
  void TearDown() override {
    if (client_) client_->remove(kube::resources::namespaces, "", ns_);
  }

  // A client whose connections go through `proxy`.
  std::unique_ptr<kube::client> client_via(const testing::tcp_proxy& proxy) {
    kube::rest_config via = cfg_;
    via.server = "https://127.0.0.1:" + std::to_string(proxy.port());
    return std::make_unique<kube::client>(std::make_shared<kube::cpprest_transport>(via));
  }
  uint16_t server_port() const {
    return static_cast<uint16_t>(std::stoi(cfg_.server.substr(cfg_.server.rfind(':') + 1)));
  }

  void create(const std::string& name, const std::string& value = "1") {
    client_->create(kube::resources::config_maps,
                    {{"metadata", {{"name", name}, {"namespace", ns_}, {"labels", {{"informer-test", "yes"}}}}},
                     {"data", {{"v", value}}}});
  }

  // The cache holds exactly what the server has (names and values).
  bool matches_server(const informer& inf) {
    auto server = client_->list_all(kube::resources::config_maps, ns_, {.label_selector = "informer-test=yes"});
    std::set<std::string> want, have;
    for (const auto& o : server.items) want.insert(kube::name_of(o) + "=" + o["data"].value("v", ""));
    for (const auto& o : inf.cache().list()) have.insert(kube::name_of(*o) + "=" + (*o)["data"].value("v", ""));
    return want == have;
  }

  watcher_options watch_options() {
    return {.kind = kube::resources::config_maps,
            .ns = ns_,
            .label_selector = "informer-test=yes",
            .backoff_initial = std::chrono::milliseconds(100),
            .backoff_max = std::chrono::milliseconds(1000)};
  }

  kube::rest_config cfg_;
  std::unique_ptr<kube::client> client_;
  std::string ns_;
};

TEST_F(InformerIntegrationTest, FollowsCreatesUpdatesAndDeletes) {
  create("a");
  create("b");
  informer inf(*client_, watch_options());
  std::atomic<int> adds{0}, updates{0}, deletes{0};
  inf.add_handler({.on_add = [&](const object_ptr&) { ++adds; },
                   .on_update = [&](const object_ptr&, const object_ptr&) { ++updates; },
                   .on_delete = [&](const object_ptr&) { ++deletes; }});
  inf.start();
  ASSERT_TRUE(inf.wait_for_sync(std::chrono::seconds(30)));
  EXPECT_EQ(inf.cache().size(), 2u);
  create("c");
  client_->merge_patch(kube::resources::config_maps, ns_, "a", {{"data", {{"v", "2"}}}});
  client_->remove(kube::resources::config_maps, ns_, "b");
  ASSERT_TRUE(eventually([&] { return matches_server(inf); }));
  ASSERT_TRUE(eventually([&] { return adds == 3 && updates == 1 && deletes == 1; }));
  EXPECT_EQ(inf.cache().get(ns_ + "/a")->at("data").at("v"), "2");
  EXPECT_FALSE(inf.cache().get(ns_ + "/a")->at("metadata").contains("managedFields"));
}

TEST_F(InformerIntegrationTest, ResumesACutWatchFromItsVersionWithoutReListing) {
  testing::tcp_proxy proxy("127.0.0.1", server_port());
  auto via = client_via(proxy);
  create("before");
  informer inf(*via, watch_options());
  inf.start();
  ASSERT_TRUE(inf.wait_for_sync(std::chrono::seconds(30)));

  proxy.set_refusing(true);
  proxy.cut();
  create("while-cut", "x");
  client_->remove(kube::resources::config_maps, ns_, "before");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(matches_server(inf)) << "the informer cannot have seen changes while cut off";
  proxy.set_refusing(false);

  ASSERT_TRUE(eventually([&] { return matches_server(inf); }));
  EXPECT_EQ(inf.source().lists(), 1u) << "a cut connection resumes from the last resourceVersion";
  EXPECT_GE(inf.source().watches(), 2u);
}

// Restarts the shared API server: ctest runs it alone (RUN_SERIAL).
TEST_F(InformerIntegrationTest, GoneAfterCompactionReListsIntoACorrectCache) {
  const std::string etcd = datashare::testing::require_env("DATASHARE_ETCD_ENDPOINT");
  const std::string source = datashare::testing::require_env("DATASHARE_SOURCE_DIR");
  testing::tcp_proxy proxy("127.0.0.1", server_port());
  auto via = client_via(proxy);
  create("kept");
  create("deleted-while-away");
  create("changed-while-away");
  std::vector<std::string> errors;
  std::mutex mu;
  auto opts = watch_options();
  opts.on_error = [&](const std::string& what, const std::exception&) {
    std::lock_guard l(mu);
    errors.push_back(what);
  };
  informer inf(*via, opts);
  inf.start();
  ASSERT_TRUE(inf.wait_for_sync(std::chrono::seconds(30)));
  const std::string old_version = inf.source().resource_version();

  proxy.set_refusing(true);
  proxy.cut();
  client_->remove(kube::resources::config_maps, ns_, "deleted-while-away");
  client_->merge_patch(kube::resources::config_maps, ns_, "changed-while-away", {{"data", {{"v", "new"}}}});
  create("created-while-away");

  // Compact etcd's history up to now, then restart the API server so its watch cache starts
  // after the compaction: the informer's resourceVersion is now gone everywhere.
  web::http::client::http_client etcd_client(etcd);
  auto range = etcd_client.request(web::http::methods::POST, "/v3/kv/range", R"({"key":"AA=="})", "application/json")
                   .get()
                   .extract_json(true)
                   .get();
  const std::string revision = range.at("header").at("revision").as_string();
  auto compacted = etcd_client
                       .request(web::http::methods::POST, "/v3/kv/compaction",
                                R"({"revision":")" + revision + R"(","physical":true})", "application/json")
                       .get();
  ASSERT_EQ(compacted.status_code(), 200) << compacted.extract_string(true).get();
  ASSERT_EQ(std::system((source + "/hack/local-cluster.sh restart-apiserver >/dev/null 2>&1").c_str()), 0);

  // Watching from the old version is now refused with 410.
  std::stop_source stop;
  try {
    client_->watch(
        kube::resources::config_maps, ns_, {.resource_version = old_version}, [](kube::watch_event&&) { return true; },
        stop.get_token());
    ADD_FAILURE() << "a watch from a compacted resourceVersion must fail";
  } catch (const kube::api_error& e) {
    EXPECT_TRUE(kube::is_gone(e)) << e.what();
  }

  proxy.set_refusing(false);
  ASSERT_TRUE(eventually([&] { return inf.source().lists() >= 2 && matches_server(inf); }))
      << "lists=" << inf.source().lists();
  EXPECT_EQ(inf.cache().get(ns_ + "/deleted-while-away"), nullptr);
  EXPECT_EQ(inf.cache().get(ns_ + "/changed-while-away")->at("data").at("v"), "new");
  std::lock_guard l(mu);
  bool saw_expiry = false;
  for (const auto& e : errors) saw_expiry |= e.find("expired") != std::string::npos;
  EXPECT_TRUE(saw_expiry) << "the re-list was caused by the 410";
}

}  // namespace
}  // namespace datashare::runtime
