// Kill -9 of the owner's sidecar (the publisher) while changes are written to it, several times,
// each time restarted on the same data directory: every change answered 202 is in the topic and
// takes effect exactly once for a consumer that applies by version (DESIGN.md §4: a version not
// above the stored one is ignored), the final state of each key is its last acknowledged write,
// and acknowledged versions strictly grow per key across restarts. Changes cut off by a kill
// (no answer) may or may not be published: both are fine, and counted. Sizes:
// DATASHARE_CHAOS_PUBLISHER_KILLS, DATASHARE_CHAOS_PUBLISHER_KEYS (hack/chaos.sh runs 20 kills).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

using namespace std::chrono_literals;

struct write {
  std::uint64_t version = 0;
  std::string name;
};

TEST(SidecarPublisherKillTest, EveryAcknowledgedChangeTakesEffectOnceAcrossKills) {
  const int kills_wanted = static_cast<int>(env_size("DATASHARE_CHAOS_PUBLISHER_KILLS", 5));
  const int keys = static_cast<int>(env_size("DATASHARE_CHAOS_PUBLISHER_KEYS", 50));
  const auto began = std::chrono::steady_clock::now();
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.pubkill.products");
  create_topic(kafka, topic, 3);
  const scoped_dir tmp("pubkill");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(tmp.path(), "version: 1\ndataDir: " + tmp.path() + "/data\nkafka: {bootstrapServers: \"" +
                                          kafka + "\"}\nlisten: {data: {address: 127.0.0.1, port: " +
                                          std::to_string(port) + "}}\npublish:\n  - product: " + products_yaml() +
                                          "\n    topic: " + topic + "\n    outbox: {maxEntries: 1000000}\n");
  auto healthy = [&] { return http_call(port, "GET", "/healthz").status == 200; };
  sidecar.start();
  ASSERT_TRUE(wait_until(healthy, 30s)) << sidecar.log();

  // The writer: round-robin over the keys, as fast as the sidecar answers. Each 202 is recorded
  // with the version the sidecar gave it, in acknowledgement order.
  std::mutex mu;
  std::map<std::string, std::vector<write>> acked;  // key → acknowledged writes, in order
  std::atomic<long> acknowledged{0}, unanswered{0}, refused{0};
  std::atomic<bool> stop{false};
  auto put = [&](int i) {
    std::string key = "p" + std::to_string(i % keys), name = "w" + std::to_string(i);
    auto r = http_call(port, "PUT", "/v1/data/products/" + key, nlohmann::json{{"name", name}}.dump());
    if (r.status == 202) {
      std::lock_guard lock(mu);
      acked[key].push_back({std::stoull(r.headers["datashare-version"]), name});
      ++acknowledged;
      return true;
    }
    ++(r.status == 0 ? unanswered : refused);
    return false;
  };
  int next = 0;
  std::thread writer([&] {
    while (!stop.load()) {
      if (!put(next++)) std::this_thread::sleep_for(20ms);  // down: retry soon, with a new change
    }
  });

  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> delay_ms(200, 1500);
  int kills = 0;
  for (; kills < kills_wanted; ++kills) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    sidecar.kill(SIGKILL);
    EXPECT_EQ(sidecar.wait(), 128 + SIGKILL);
    sidecar.start();
    ASSERT_TRUE(wait_until(healthy, 30s)) << sidecar.log();
  }
  std::this_thread::sleep_for(500ms);
  stop = true;
  writer.join();
  // One last acknowledged write per key, so each key's final state is a known acknowledged one
  // whatever a kill cut off before it.
  for (int i = 0; i < keys; ++i) ASSERT_TRUE(put(next++)) << sidecar.log();

  nlohmann::json status;
  ASSERT_TRUE(wait_until(
      [&] {
        status = nlohmann::json::parse(http_call(port, "GET", "/readyz").body, nullptr, false);
        return !status.is_discarded() && status["publishers"][0]["outboxDepth"] == 0;
      },
      120s))
      << status.dump() << "\n"
      << sidecar.log();

  // The topic, per key in offset order (a key's events are in one partition).
  auto read = run_command("kcat -C -b " + kafka + " -t " + topic + " -o beginning -e -q -J 2>&1");
  ASSERT_EQ(read.exit_code, 0) << read.output;
  std::map<std::string, std::vector<write>> in_topic;
  long messages = 0;
  std::istringstream lines(read.output);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("headers") || !j["payload"].is_string()) continue;
    write w;
    const auto& h = j["headers"];
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
      if (h[i] == "datashare_version") w.version = std::stoull(h[i + 1].get<std::string>());
    }
    auto value = nlohmann::json::parse(j["payload"].get<std::string>(), nullptr, false);
    if (!value.is_discarded() && value.contains("name")) w.name = value["name"].get<std::string>();
    in_topic[j["key"].get<std::string>()].push_back(w);
    ++messages;
  }

  // A consumer applying by version: an event takes effect only when its version is above every
  // earlier one of its key. Each acknowledged change must take effect (once: versions differ).
  long lost = 0, not_growing = 0, final_wrong = 0, redelivered = 0, unacked_published = 0;
  for (const auto& [key, writes] : acked) {
    for (std::size_t i = 1; i < writes.size(); ++i) not_growing += writes[i].version <= writes[i - 1].version ? 1 : 0;
    std::map<std::uint64_t, std::string> effective;  // version → name, of events that take effect
    std::uint64_t top = 0;
    for (const auto& e : in_topic[key]) {
      if (e.version > top) {
        top = e.version;
        effective[e.version] = e.name;
      } else {
        ++redelivered;
      }
    }
    for (const auto& w : writes) {
      auto it = effective.find(w.version);
      if (it == effective.end() || it->second != w.name) {
        ++lost;
        ADD_FAILURE() << key << " v" << w.version << " (" << w.name << ") acknowledged but never took effect";
      }
    }
    unacked_published += static_cast<long>(effective.size()) - static_cast<long>(writes.size());
    if (effective.empty() || effective.rbegin()->second != writes.back().name) {
      ++final_wrong;
      ADD_FAILURE() << key << ": final state is not the last acknowledged write " << writes.back().name;
    }
  }
  EXPECT_EQ(not_growing, 0) << "acknowledged versions must strictly grow per key, across restarts";
  EXPECT_EQ(kills, kills_wanted);
  chaos_line(
      "publisher-kill",
      {{"acknowledged", std::to_string(acknowledged.load())},
       {"unanswered", std::to_string(unanswered.load())},
       {"refused", std::to_string(refused.load())},
       {"kills", std::to_string(kills)},
       {"in_topic", std::to_string(messages)},
       {"redelivered", std::to_string(redelivered)},
       {"unacked_published", std::to_string(unacked_published)},
       {"versions_not_growing", std::to_string(not_growing)},
       {"final_wrong", std::to_string(final_wrong)},
       {"lost", std::to_string(lost + final_wrong + not_growing)},
       {"seconds",
        std::to_string(
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began).count())}});
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0);
}

}  // namespace
}  // namespace datashare::sidecar::itest
