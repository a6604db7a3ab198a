// Kill -9 of the replica at random points while 200,000 events stream in, five times, each time
// restarted on the same data directory: the final copy equals the source (hash of every
// key/version/value), every event was applied exactly once (the persisted applied counter equals
// the number of events, and nothing was ever seen twice: the stale counter stays 0). The chaos
// suite (hack/chaos.sh) runs it with 1M events and 20 kills: DATASHARE_CHAOS_EVENTS, _KILLS, _KEYS.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "sidecar/event/cloudevents.h"
#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

const int kEvents = static_cast<int>(env_size("DATASHARE_CHAOS_EVENTS", 200'000));
const int kKeys = static_cast<int>(env_size("DATASHARE_CHAOS_KEYS", 20'000));
const int kKills = static_cast<int>(env_size("DATASHARE_CHAOS_KILLS", 5));

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 1469598103934665603ULL) {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// Every live item of the copy, as "key\tversion\tvalue\n" lines in key order, read page by page.
std::string dump_copy(std::uint16_t port) {
  std::string out, after;
  for (int page = 0; page < 1000; ++page) {
    std::string target = "/v1/data/products?limit=1000";
    if (!after.empty()) target += "&after=" + after;  // keys here need no escaping
    auto r = http_call(port, "GET", target);
    if (r.status != 200) return "<scan failed: " + std::to_string(r.status) + ">";
    auto j = nlohmann::json::parse(r.body);
    for (const auto& it : j["items"]) {
      out += it["key"].get<std::string>() + "\t" + std::to_string(it["version"].get<std::uint64_t>()) + "\t" +
             it["value"].dump() + "\n";
    }
    if (!j.contains("next")) break;
    after = j["next"].get<std::string>();
  }
  return out;
}

// With the default `readIndex: auto` (sidecar/store/read_index.h; this machine's memory holds the
// index) and with `readIndex: none`: the index is built again from the store at each restart (a
// kill -9 rolls the store back to its last flush), and a GET of a key (answered by the index once
// built) must read what the scan (answered by RocksDB) reads.
class SidecarCrashTest : public ::testing::TestWithParam<bool> {};

TEST_P(SidecarCrashTest, KillNineDuringAStreamLosesNothingAndAppliesNothingTwice) {
  const bool read_index = GetParam();
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.crash.products");
  create_topic(kafka, topic, 3);
  const scoped_dir tmp("crash");
  const std::string& dir = tmp.path();
  const std::uint16_t port = free_port();
  sidecar_process sidecar(dir, "version: 1\ndataDir: " + dir + "/data\nkafka: {bootstrapServers: \"" + kafka +
                                   "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
                                   "}}\nsubscribe:\n  - policy: crash\n    namespace: orders\n    product: " +
                                   products_yaml() + "\n    topic: " + topic + "\n    group: " + topic +
                                   ".crash\n    mode: event\n    fields: [id, name]\n    maxLag: 60s\n" +
                                   (read_index ? "" : "    readIndex: none\n"));

  // The source: kKeys keys, each updated kEvents / kKeys times with growing versions.
  std::map<std::string, std::string> expected;  // key → "version\tvalue"
  std::atomic<int> produced{0};
  std::atomic<bool> producer_failed{false};
  std::thread source([&] {
    test_producer producer(kafka);
    if (!producer.error().empty()) {
      producer_failed = true;
      return;
    }
    for (int i = 0; i < kEvents; ++i) {
      std::string key = "k" + std::to_string(i % kKeys);
      std::uint64_t version = static_cast<std::uint64_t>(i / kKeys) + 1;
      std::string value = nlohmann::json{{"id", key}, {"name", "n-" + std::to_string(version)}, {"price", i}}.dump();
      std::vector<kafka::header> headers{
          {"datashare_version", std::to_string(version)},
          {"ce_time", event::format_time(std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count())}};
      if (producer.produce(topic, key, value, headers)) {
        producer_failed = true;
        return;
      }
      produced = i + 1;
      // A steady stream over ~10 s, so the kills land while events are arriving.
      if (i % 2000 == 1999) {
        producer.poll(std::chrono::milliseconds(0));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (producer.flush(std::chrono::seconds(60)) || producer.failed_deliveries() != 0) producer_failed = true;
  });
  for (int i = 0; i < kEvents; ++i) {
    std::string key = "k" + std::to_string(i % kKeys);
    std::uint64_t version = static_cast<std::uint64_t>(i / kKeys) + 1;
    expected[key] =
        std::to_string(version) + "\t" + nlohmann::json{{"id", key}, {"name", "n-" + std::to_string(version)}}.dump();
  }

  // The kill points: kKills random positions of the stream (events produced so far), in order,
  // at least 250 ms after the previous start so each kill finds a running replica.
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> position(kEvents / 50, kEvents - kEvents / 50);
  std::vector<int> points(static_cast<std::size_t>(kKills));
  for (auto& p : points) p = position(rng);
  std::sort(points.begin(), points.end());
  const auto began = std::chrono::steady_clock::now();
  int kills = 0;
  sidecar.start();
  for (; kills < kKills; ++kills) {
    auto started = std::chrono::steady_clock::now();
    wait_until([&] { return produced.load() >= points[static_cast<std::size_t>(kills)] || producer_failed.load(); },
               std::chrono::seconds(600));
    std::this_thread::sleep_until(started + std::chrono::milliseconds(250));
    sidecar.kill(SIGKILL);
    EXPECT_EQ(sidecar.wait(), 128 + SIGKILL);
    sidecar.start();
  }
  source.join();
  ASSERT_FALSE(producer_failed.load());
  ASSERT_EQ(produced.load(), kEvents);

  nlohmann::json status;
  bool done = wait_until(
      [&] {
        auto r = http_call(port, "GET", "/readyz");
        if (r.status == 0) return false;
        status = nlohmann::json::parse(r.body, nullptr, false);
        return !status.is_discarded() && status["replicas"][0]["appliedTotal"] == kEvents &&
               status["replicas"][0]["lagEvents"] == 0;
      },
      std::chrono::seconds(std::max(180, kEvents / 2000)));
  ASSERT_TRUE(done) << status.dump() << "\n" << sidecar.log();
  EXPECT_EQ(status["replicas"][0]["staleTotal"], 0) << "an event was delivered again after a restart";
  EXPECT_EQ(status["replicas"][0]["dlqTotal"], 0);

  std::string want;
  for (const auto& [key, rest] : expected) want += key + "\t" + rest + "\n";
  std::string got = dump_copy(port);
  EXPECT_EQ(fnv1a(got), fnv1a(want)) << "copy differs from the source; first bytes: " << got.substr(0, 200);
  EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), kKeys);
  // Losses: source keys whose copy is missing or differs.
  std::map<std::string, std::string> copy;
  std::istringstream lines(got);
  for (std::string line; std::getline(lines, line);) {
    auto tab = line.find('\t');
    if (tab != std::string::npos) copy[line.substr(0, tab)] = line.substr(tab + 1);
  }
  long lost = 0;
  for (const auto& [key, rest] : expected) lost += copy.count(key) == 0 || copy[key] != rest ? 1 : 0;
  // Point reads (the read index when it is on) agree with the scan, for every tenth key.
  int checked = 0;
  for (const auto& [key, rest] : copy) {
    if (checked++ % 10 != 0) continue;
    auto r = http_call(port, "GET", "/v1/data/products/" + key);
    const auto tab = rest.find('\t');
    ASSERT_EQ(r.status, 200) << key;
    EXPECT_EQ(r.headers["datashare-version"], rest.substr(0, tab)) << key;
    EXPECT_EQ(nlohmann::json::parse(r.body).dump(), rest.substr(tab + 1)) << key;
  }
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began).count();
  std::ostringstream hash;
  hash << std::hex << fnv1a(got) << (fnv1a(got) == fnv1a(want) ? "=source" : "!=source");
  chaos_line(read_index ? "replica-kill" : "replica-kill-no-read-index",
             {{"events", std::to_string(kEvents)},
              {"keys", std::to_string(kKeys)},
              {"kills", std::to_string(kills)},
              {"applied", status["replicas"][0]["appliedTotal"].dump()},
              {"redelivered", status["replicas"][0]["staleTotal"].dump()},
              {"hash", hash.str()},
              {"lost", std::to_string(lost)},
              {"seconds", std::to_string(seconds)}});
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(stores, SidecarCrashTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Default" : "RocksDBOnly"; });

}  // namespace
}  // namespace datashare::sidecar::itest
