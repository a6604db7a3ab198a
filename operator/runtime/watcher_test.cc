#include "operator/runtime/watcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "operator/kube/fake_transport.h"
#include "operator/runtime/informer.h"

namespace datashare::runtime {
namespace {
using kube::json;
using kube::testing::fake_transport;
using kube::testing::scripted_response;

std::string cm(const std::string& name, const std::string& rv) {
  return json{{"metadata",
               {{"name", name},
                {"namespace", "a"},
                {"resourceVersion", rv},
                {"managedFields", json::array({{{"manager", "x"}}})}}}}
      .dump();
}
std::string list_body(const std::vector<std::string>& items, const std::string& rv, const std::string& cont = "") {
  std::string body = R"({"metadata":{"resourceVersion":")" + rv + R"(","continue":")" + cont + R"("},"items":[)";
  for (size_t i = 0; i < items.size(); ++i) body += (i ? "," : "") + items[i];
  return body + "]}";
}
std::string event(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}";
}

// Records what a watcher delivers; waits for it from the test thread.
class recorder {
 public:
  void operator()(watcher_event&& e) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  bool wait_for_count(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return events_.size() >= n; });
  }
  std::vector<std::string> summary() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& e : events_) {
      static const char* names[] = {"init_begin", "init_apply", "init_done", "apply", "remove"};
      std::string s = names[static_cast<int>(e.type)];
      if (!e.object.is_null())
        s += " " + kube::name_of(e.object) + "@" + e.object["metadata"].value("resourceVersion", "");
      out.push_back(s);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<watcher_event> events_;
};

class WatcherTest : public ::testing::Test {
 protected:
  WatcherTest() : client_(transport_, {.sleep = [](std::chrono::milliseconds) {}}) {}

  watcher_options options() {
    return {.kind = kube::resources::config_maps,
            .ns = "a",
            .page_size = 2,
            .time_source = &clock_,
            .on_error = [this](const std::string& what, const std::exception&) {
              std::lock_guard lock(mu_);
              errors_.push_back(what);
            }};
  }
  std::vector<kube::http_request> watch_requests() {
    std::vector<kube::http_request> out;
    for (auto& r : transport_->requests()) {
      if (r.target.find("watch=true") != std::string::npos) out.push_back(r);
    }
    return out;
  }
  bool wait_for_requests(size_t n) {
    for (int i = 0; i < 1000; ++i) {
      if (transport_->requests().size() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  std::shared_ptr<fake_transport> transport_ = std::make_shared<fake_transport>();
  kube::client client_;
  manual_clock clock_;
  recorder rec_;
  std::mutex mu_;
  std::vector<std::string> errors_;
};

TEST_F(WatcherTest, ListsPagesThenWatchesFromTheListVersionAndResumesFromTheLastEvent) {
  transport_->push({200, list_body({cm("x", "1"), cm("y", "2")}, "5", "c1")});
  transport_->push({200, list_body({cm("z", "3")}, "5")});
  transport_->push(
      {.lines = {event("ADDED", cm("n", "6")), event("MODIFIED", cm("x", "7")),
                 event("BOOKMARK", R"({"metadata":{"resourceVersion":"9"}})"), event("DELETED", cm("y", "10"))}});
  watcher w(client_, options());
  std::jthread t([&](std::stop_token stop) { w.run(std::ref(rec_), stop); });
  ASSERT_TRUE(rec_.wait_for_count(8));
  ASSERT_TRUE(wait_for_requests(4));  // the second watch, resuming
  EXPECT_EQ(rec_.summary(),
            (std::vector<std::string>{"init_begin", "init_apply x@1", "init_apply y@2", "init_apply z@3", "init_done",
                                      "apply n@6", "apply x@7", "remove y@10"}));
  auto watches = watch_requests();
  ASSERT_GE(watches.size(), 2u);
  EXPECT_THAT(watches[0].target, ::testing::HasSubstr("resourceVersion=5&"));
  EXPECT_THAT(watches[0].target, ::testing::HasSubstr("allowWatchBookmarks=true"));
  EXPECT_THAT(watches[1].target, ::testing::HasSubstr("resourceVersion=10&"));
  EXPECT_EQ(w.lists(), 1u) << "a watch closed by the server resumes; it does not re-list";
  t.request_stop();
}

// Found with fuzz/fuzz_watch_stream: a resourceVersion that is not a string threw nlohmann's
// type_error out of run(), ending the informer's thread. It is ignored now; the next good event
// moves the version on.
TEST_F(WatcherTest, MistypedResourceVersionInAnEventIsIgnored) {
  transport_->push({200, list_body({}, "5")});
  transport_->push({.lines = {event("ADDED", R"({"metadata":{"name":"odd","namespace":"ns","resourceVersion":6}})"),
                              event("ADDED", cm("n", "7"))}});
  watcher w(client_, options());
  std::jthread t([&](std::stop_token stop) { w.run(std::ref(rec_), stop); });
  ASSERT_TRUE(rec_.wait_for_count(4));
  ASSERT_TRUE(wait_for_requests(3));  // the second watch, resuming
  auto watches = watch_requests();
  ASSERT_GE(watches.size(), 2u);
  EXPECT_THAT(watches[1].target, ::testing::HasSubstr("resourceVersion=7&"));
  t.request_stop();
}

// The same input one step further: the informer's cache read the version with json::value too.
TEST(StoreTest, MistypedResourceVersionIsCachedWithoutOne) {
  store s;
  s.apply(
      {watcher_event_type::apply, json::parse(R"({"metadata":{"name":"odd","namespace":"ns","resourceVersion":6}})")});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(kube::name_of(*s.get("ns/odd")), "odd");
}

TEST_F(WatcherTest, WatchTimeoutIsDrawnBetweenFiveAndTenMinutes) {
  transport_->push({200, list_body({}, "5")});
  watcher w(client_, options());
  std::jthread t([&](std::stop_token stop) { w.run(std::ref(rec_), stop); });
  ASSERT_TRUE(wait_for_requests(2));
  auto target = watch_requests().at(0).target;
  auto pos = target.find("timeoutSeconds=");
  ASSERT_NE(pos, std::string::npos);
  int seconds = std::stoi(target.substr(pos + 15));
  EXPECT_GE(seconds, 300);
  EXPECT_LE(seconds, 600);
}

TEST_F(WatcherTest, GoneReListsAndTheStoreDropsWhatWasDeletedMeanwhile) {
  transport_->push({200, list_body({cm("x", "1"), cm("y", "2")}, "5")});
  transport_->push(
      {.lines = {event("ERROR", R"({"kind":"Status","code":410,"reason":"Expired","message":"too old"})")}});
  transport_->push({200, list_body({cm("x", "8")}, "9")});
  store s;
  std::vector<store_change> changes;
  watcher w(client_, options());
  std::jthread t([&](std::stop_token stop) {
    w.run(
        [&](watcher_event&& e) {
          s.apply(std::move(e), [&](const store_change& c) { changes.push_back(c); });
          rec_(watcher_event{watcher_event_type::init_done, {}});
        },
        stop);
  });
  ASSERT_TRUE(wait_for_requests(4));  // list, watch(410), list, watch
  t.request_stop();
  t.join();
  EXPECT_EQ(w.lists(), 2u);
  EXPECT_EQ(s.size(), 1u);
  ASSERT_NE(s.get("a/x"), nullptr);
  EXPECT_EQ((*s.get("a/x"))["metadata"]["resourceVersion"], "8");
  EXPECT_EQ(s.get("a/y"), nullptr);
  // First list: two adds. Re-list: x updated, y deleted.
  ASSERT_EQ(changes.size(), 4u);
  int deletes = 0, updates = 0;
  for (size_t i = 2; i < changes.size(); ++i) {
    if (changes[i].old && !changes[i].now) ++deletes;
    if (changes[i].old && changes[i].now) ++updates;
  }
  EXPECT_EQ(deletes, 1);
  EXPECT_EQ(updates, 1);
  auto watches = watch_requests();
  EXPECT_THAT(watches.at(1).target, ::testing::HasSubstr("resourceVersion=9&"));
}

TEST_F(WatcherTest, TransportFailuresBackOffAndResumeWithoutReList) {
  transport_->push({200, list_body({cm("x", "1")}, "5")});
  transport_->push({.transport_failure = true});
  transport_->push({.lines = {event("MODIFIED", cm("x", "6"))}});
  watcher w(client_, options());
  std::jthread t([&](std::stop_token stop) { w.run(std::ref(rec_), stop); });
  ASSERT_TRUE(clock_.await_waiters(1)) << "the watcher waits before reconnecting";
  EXPECT_EQ(watch_requests().size(), 1u);
  clock_.advance(std::chrono::milliseconds(800));
  ASSERT_TRUE(rec_.wait_for_count(4));
  EXPECT_EQ(rec_.summary().back(), "apply x@6");
  EXPECT_EQ(w.lists(), 1u);
  EXPECT_THAT(watch_requests().at(1).target, ::testing::HasSubstr("resourceVersion=5&"));
  std::lock_guard lock(mu_);
  ASSERT_EQ(errors_.size(), 1u);
  EXPECT_EQ(errors_[0], "watch configmaps");
}

TEST(ReconnectBackoffTest, DoublesFrom800msTo30sWithJitterAndResetsAfterAQuietPeriod) {
  manual_clock clock;
  reconnect_backoff b(std::chrono::milliseconds(800), std::chrono::seconds(30), std::chrono::minutes(2), clock);
  std::vector<int64_t> caps = {800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
  for (int64_t cap : caps) {
    auto d = b.next().count();
    EXPECT_LE(d, cap);
    EXPECT_GE(d, cap / 2);
    clock.advance(std::chrono::seconds(1));
  }
  clock.advance(std::chrono::minutes(3));
  auto d = b.next().count();
  EXPECT_LE(d, 800) << "a healthy period forgets earlier failures";
}

TEST(StoreTest, IndexesByNamespaceOwnerAndCustomFunctions) {
  store s;
  s.add_index("by-label-app", [](const json& o) -> std::vector<std::string> {
    auto labels = o["metadata"].value("labels", json::object());
    if (!labels.contains("app")) return {};
    return {labels["app"].get<std::string>()};
  });
  auto obj = [](const std::string& ns, const std::string& name, const std::string& app, const std::string& owner) {
    return json{{"metadata",
                 {{"namespace", ns},
                  {"name", name},
                  {"resourceVersion", "1"},
                  {"labels", {{"app", app}}},
                  {"ownerReferences", json::array({{{"uid", owner}}})}}}};
  };
  s.apply({watcher_event_type::init_begin, {}});
  s.apply({watcher_event_type::init_apply, obj("a", "1", "web", "u1")});
  s.apply({watcher_event_type::init_apply, obj("a", "2", "db", "u1")});
  s.apply({watcher_event_type::init_apply, obj("b", "3", "web", "u2")});
  EXPECT_FALSE(s.has_synced());
  EXPECT_EQ(s.size(), 0u) << "a list in progress is not visible";
  s.apply({watcher_event_type::init_done, {}});
  EXPECT_TRUE(s.has_synced());
  EXPECT_EQ(s.by_index(kNamespaceIndex, "a").size(), 2u);
  EXPECT_EQ(s.by_index(kOwnerIndex, "u1").size(), 2u);
  EXPECT_EQ(s.by_index("by-label-app", "web").size(), 2u);

  // An update moves the object between index values.
  s.apply({watcher_event_type::apply, obj("a", "1", "db", "u2")});
  EXPECT_EQ(s.by_index("by-label-app", "web").size(), 1u);
  EXPECT_EQ(s.by_index("by-label-app", "db").size(), 2u);
  EXPECT_EQ(s.by_index(kOwnerIndex, "u2").size(), 2u);
  s.apply({watcher_event_type::remove, obj("a", "1", "db", "u2")});
  EXPECT_EQ(s.by_index("by-label-app", "db").size(), 1u);
  EXPECT_EQ(s.get("a/1"), nullptr);
}

TEST(StoreTest, AListIsReportedInKeyOrder) {
  store s;
  auto obj = [](const std::string& ns, const std::string& name, const std::string& rv) {
    return json{{"metadata", {{"namespace", ns}, {"name", name}, {"resourceVersion", rv}}}};
  };
  std::vector<std::string> seen;
  auto record = [&](const store_change& c) {
    const json& o = c.now ? *c.now : *c.old;
    seen.push_back(std::string(c.old && c.now ? "update " : c.now ? "add " : "delete ") + kube::object_key(o));
  };
  // Enough keys that a hash map's order is not the sorted one by chance.
  s.apply({watcher_event_type::init_begin, {}});
  for (int i = 0; i < 50; ++i) s.apply({watcher_event_type::init_apply, obj("b", "p" + std::to_string(i), "1")});
  s.apply({watcher_event_type::init_apply, obj("a", "z", "1")});
  s.apply({watcher_event_type::init_done, {}}, record);
  ASSERT_EQ(seen.size(), 51u);
  EXPECT_EQ(seen.front(), "add a/z");
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << seen[1] << " ... " << seen.back();

  // A re-list: updates, adds and deletes interleave in key order too.
  seen.clear();
  s.apply({watcher_event_type::init_begin, {}});
  s.apply({watcher_event_type::init_apply, obj("a", "z", "2")});
  s.apply({watcher_event_type::init_apply, obj("b", "p1", "1")});
  s.apply({watcher_event_type::init_apply, obj("c", "new", "1")});
  s.apply({watcher_event_type::init_done, {}}, record);
  std::vector<std::string> keys;
  for (const auto& line : seen) keys.push_back(line.substr(line.find(' ') + 1));
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(seen.front(), "update a/z");
  EXPECT_EQ(seen.back(), "add c/new");
  EXPECT_EQ(std::count_if(seen.begin(), seen.end(), [](const std::string& l) { return l.starts_with("delete "); }), 49);
}

TEST(StoreTest, KeysAndVersionsWithoutUnpacking) {
  store s;
  s.add_index("by-app", [](const json& o) { return std::vector<std::string>{o["metadata"]["labels"]["app"]}; });
  auto obj = [](const std::string& name, const std::string& rv, const std::string& app) {
    return json{
        {"metadata", {{"namespace", "a"}, {"name", name}, {"resourceVersion", rv}, {"labels", {{"app", app}}}}}};
  };
  s.apply({watcher_event_type::init_begin, {}});
  s.apply({watcher_event_type::init_apply, obj("x", "7", "web")});
  s.apply({watcher_event_type::init_apply, obj("y", "8", "db")});
  s.apply({watcher_event_type::init_done, {}});
  EXPECT_EQ(s.resource_version("a/x"), "7");
  EXPECT_EQ(s.resource_version("a/nope"), "");
  auto keys = s.keys();
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"a/x", "a/y"}));
  EXPECT_EQ(s.keys_by_index("by-app", "web"), std::vector<std::string>{"a/x"});
  EXPECT_TRUE(s.keys_by_index("by-app", "none").empty());
  EXPECT_TRUE(s.keys_by_index("no-such-index", "web").empty());
  s.apply({watcher_event_type::apply, obj("x", "9", "db")});
  EXPECT_EQ(s.resource_version("a/x"), "9");
  EXPECT_TRUE(s.keys_by_index("by-app", "web").empty());
  EXPECT_EQ(s.keys_by_index("by-app", "db").size(), 2u);
  s.apply({watcher_event_type::remove, obj("x", "9", "db")});
  EXPECT_EQ(s.resource_version("a/x"), "");
  EXPECT_EQ(s.keys_by_index("by-app", "db"), std::vector<std::string>{"a/y"});
}

TEST_F(WatcherTest, InformerStripsManagedFieldsAndCallsHandlers) {
  transport_->push({200, list_body({cm("x", "1")}, "5")});
  transport_->push({.lines = {event("MODIFIED", cm("x", "6")), event("DELETED", cm("x", "7"))}, .hold_open = true});
  informer inf(client_, options());
  std::mutex mu;
  std::vector<std::string> seen;
  inf.add_handler({.on_add =
                       [&](const object_ptr& o) {
                         std::lock_guard l(mu);
                         EXPECT_FALSE((*o)["metadata"].contains("managedFields"));
                         seen.push_back("add " + kube::name_of(*o));
                       },
                   .on_update =
                       [&](const object_ptr& old, const object_ptr& now) {
                         std::lock_guard l(mu);
                         seen.push_back("update " + old->at("metadata").value("resourceVersion", "") + "->" +
                                        now->at("metadata").value("resourceVersion", ""));
                       },
                   .on_delete =
                       [&](const object_ptr& o) {
                         std::lock_guard l(mu);
                         seen.push_back("delete " + kube::name_of(*o));
                       }});
  inf.start();
  ASSERT_TRUE(inf.wait_for_sync(std::chrono::seconds(10)));
  for (int i = 0; i < 1000; ++i) {
    {
      std::lock_guard l(mu);
      if (seen.size() >= 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  inf.stop();
  EXPECT_EQ(seen, (std::vector<std::string>{"add x", "update 1->6", "delete x"}));
  EXPECT_EQ(inf.cache().size(), 0u);
}

}  // namespace
}  // namespace datashare::runtime
