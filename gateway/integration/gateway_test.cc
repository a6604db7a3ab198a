// The gateway coordinator as a process with its participants as processes: the owner's sidecar
// (in front of datashare-test-owner), two copy sidecars, the real broker. Kill -9 at each
// protocol point, participant failures, concurrent writers, bad requests, the published event.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "sidecar/integration/harness.h"
#include "sidecar/store/rocksdb_kv.h"
#include "tests/support/test_owner.h"

namespace datashare::gateway {
namespace {

using namespace std::chrono_literals;
namespace it = sidecar::itest;
using json = nlohmann::json;

std::string binary(const char* name) {
  const char* dir = std::getenv("DATASHARE_BINARY_DIR");
  if (dir == nullptr) throw std::runtime_error("DATASHARE_BINARY_DIR is not set (run through ctest)");
  return std::string(dir) + "/bin/" + name;
}

// datashare-gateway as a child process, stderr to a log file, an optional crash point.
class gateway_process {
 public:
  gateway_process(std::string dir, const std::string& config) : dir_(std::move(dir)) {
    std::ofstream(dir_ + "/gateway.yaml") << config;
  }
  ~gateway_process() { kill(); }

  void start(const std::string& crash_at = "") {
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open((dir_ + "/gateway.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 2);
        ::dup2(fd, 1);
      }
      if (crash_at.empty()) {
        ::unsetenv("DATASHARE_GATEWAY_CRASH_AT");
      } else {
        ::setenv("DATASHARE_GATEWAY_CRASH_AT", crash_at.c_str(), 1);
      }
      std::string bin = binary("datashare-gateway"), cfg = dir_ + "/gateway.yaml";
      ::execl(bin.c_str(), bin.c_str(), "--config", cfg.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    pid_ = pid;
  }
  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // Exit status once it ended by itself (128 + signal), or -1 while it runs.
  int reap(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
      }
      if (std::chrono::steady_clock::now() > until) return -1;
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  std::string log() const {
    std::ifstream in(dir_ + "/gateway.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

struct sidecar_node {
  std::string name;
  std::uint16_t data_port = 0, participant_port = 0;
  std::unique_ptr<it::scoped_dir> dir;
  std::unique_ptr<it::sidecar_process> process;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(participant_port); }
};

class gateway_test : public ::testing::Test {
 protected:
  // The first event of `key` in the product's topic, as kcat prints it ("key|headers|value"),
  // waited for up to 20 s; empty when none came.
  std::string topic_line(const std::string& key) {
    std::string out;
    it::wait_until(
        [&] {
          out =
              it::run_command("kcat -C -b " + kafka_ + " -t " + topic_ + " -e -q -f '%k|%h|%s\\n' 2>/dev/null").output;
          return out.find(key + "|") != std::string::npos;
        },
        20s);
    const auto at = out.find(key + "|");
    if (at == std::string::npos) return {};
    return out.substr(at, out.find('\n', at) - at);
  }

  void SetUp() override {
    kafka_ = it::bootstrap();
    topic_ = it::unique_name("gw-products");
    it::create_topic(kafka_, topic_, 1);
    gw_dir_ = std::make_unique<it::scoped_dir>("gateway");
    gw_port_ = port();
    admin_port_ = port();
    const std::string coordinator = "http://127.0.0.1:" + std::to_string(gw_port_);
    const std::string product = it::products_yaml();

    nodes_.resize(3);
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      auto& n = nodes_[i];
      n.name = i == 0 ? "owner" : "copy" + std::to_string(i);
      n.data_port = port();
      n.participant_port = port();
      n.dir = std::make_unique<it::scoped_dir>("gw-" + n.name);
      std::string cfg = "version: 1\ndataDir: " + n.dir->path() + "/data\nkafka: {bootstrapServers: \"" + kafka_ +
                        "\"}\nlisten:\n  data: {address: 127.0.0.1, port: " + std::to_string(n.data_port) +
                        "}\n  participant: {address: 127.0.0.1, port: " + std::to_string(n.participant_port) +
                        "}\n  threads: 2\n";
      if (i == 0) {
        cfg += "publish:\n  - product: " + product + "\n    topic: " + topic_ +
               "\nparticipate:\n  - {product: products, namespace: catalog, role: owner, coordinatorUrl: \"" +
               coordinator + "\", lockTimeout: 1s, owner: {url: \"" + owner_.url() +
               "\", writePath: \"/products/{key}\"}}\n";
      } else {
        cfg += "subscribe:\n  - policy: " + n.name + "-products\n    namespace: " + n.name +
               "\n    product: " + product + "\n    topic: " + topic_ + "\n    group: g-" + n.name +
               "\n    mode: sync\n    fields: [id, name, price]\n    owner: {url: \"" + owner_.url() +
               "\", readPath: \"/products/{key}\"}\n" +
               "participate:\n  - {product: products, namespace: catalog, role: copy, coordinatorUrl: \"" +
               coordinator + "\", lockTimeout: 1s, policy: " + n.name + "-products}\n";
      }
      n.process = std::make_unique<it::sidecar_process>(n.dir->path(), cfg);
      n.process->start();
    }
    for (auto& n : nodes_) {
      ASSERT_TRUE(it::wait_until([&] { return it::http_call(n.data_port, "GET", "/healthz").status == 200; }, 30s))
          << n.name << ":\n"
          << n.process->log();
    }
    // Two I/O threads (the default is one): the participants' calls cross threads, as in a
    // gateway given cores of its own, and run so under TSan.
    std::string cfg = "version: 1\nproduct: " + product + "\ndataDir: " + gw_dir_->path() + "/log\n" +
                      "listen:\n  data: {address: 127.0.0.1, port: " + std::to_string(gw_port_) +
                      "}\n  admin: {address: 127.0.0.1, port: " + std::to_string(admin_port_) +
                      "}\n  threads: 2\ntransaction: {timeout: 3s}\nparticipants:\n";
    for (const auto& n : nodes_) {
      cfg += "  - {name: " + n.name + ", role: " + (n.name == "owner" ? "owner" : "copy") + ", url: \"" + n.url() +
             "\"}\n";
    }
    gateway_ = std::make_unique<gateway_process>(gw_dir_->path(), cfg);
  }

  // A free port none of this test's processes was given yet (free_port() alone may repeat one).
  std::uint16_t port() {
    for (;;) {
      auto p = it::free_port();
      if (used_ports_.insert(p).second) return p;
    }
  }

  void start_gateway(const std::string& crash_at = "") {
    gateway_->start(crash_at);
    ASSERT_TRUE(it::wait_until([&] { return it::http_call(admin_port_, "GET", "/readyz").status == 200; }, 30s))
        << gateway_->log();
  }

  // Restarts the gateway to kill itself at `crash_at` and sends the update that gets it there: the
  // client gets no answer, and the participants are left where the crash point says.
  void put_into_crash(const std::string& crash_at, const std::string& key, const json& value) {
    gateway_->kill();
    ASSERT_NO_FATAL_FAILURE(start_gateway(crash_at));
    EXPECT_EQ(put(key, value).status, 0);
    ASSERT_EQ(gateway_->reap(10s), 128 + SIGKILL);
  }

  it::http_reply put(const std::string& key, const json& value) {
    return it::http_call(gw_port_, "PUT", "/v1/data/products/" + key, value.dump());
  }

  // What each participant holds for `key`: the owner's stored value and each copy's read API.
  std::vector<std::string> holdings(const std::string& key) {
    std::vector<std::string> out;
    auto o = owner_.call("GET", "/products/" + key);
    out.push_back(o.status == 200 ? json::parse(o.body)["name"].dump() : "<" + std::to_string(o.status) + ">");
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
      auto r = it::http_call(nodes_[i].data_port, "GET", "/v1/data/products/" + key);
      out.push_back(r.status == 200 ? json::parse(r.body)["name"].dump() : "<" + std::to_string(r.status) + ">");
    }
    return out;
  }
  // One sample of the gateway process's /metrics, e.g.
  // `datashare_gateway_transactions_total{outcome="committed"}`; -1 when it is not there.
  double metric(const std::string& sample) {
    std::istringstream in(it::http_call(admin_port_, "GET", "/metrics").body);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
    }
    return -1;
  }
  static std::string outcome(const std::string& o) {
    return "datashare_gateway_transactions_total{outcome=\"" + o + "\"}";
  }
  static std::string participant_errors(const std::string& p) {
    return "datashare_gateway_participant_errors_total{participant=\"" + p + "\"}";
  }

  void expect_all(const std::string& key, const std::string& name, const std::string& context) {
    auto h = holdings(key);
    for (std::size_t i = 0; i < h.size(); ++i)
      EXPECT_EQ(h[i], json(name).dump()) << context << " at " << nodes_[i].name;
  }

  std::string kafka_, topic_;
  testing::test_owner owner_;
  std::vector<sidecar_node> nodes_;
  std::unique_ptr<it::scoped_dir> gw_dir_;
  std::uint16_t gw_port_ = 0, admin_port_ = 0;
  std::unique_ptr<gateway_process> gateway_;
  std::set<std::uint16_t> used_ports_;
};

// The chaos suite (hack/chaos.sh) reads its one line; DATASHARE_CHAOS_ROUNDS sets the kills per
// point, DATASHARE_CHAOS_SEED replays a run (the seed is printed, and named in every failure).
// Each kill is at a point drawn within its phase: after the 1st, 2nd or 3rd yes vote, the
// participants asked one by one starting from a drawn one (so the owner alone, a copy alone, or
// all three prepared); after the decision of the 1st, 2nd or 3rd transaction of the run (the
// earlier ones answered 200, their `end` records maybe still unwritten); after the 1st, 2nd or
// 3rd commit acknowledgement. Then rounds that kill the coordinator at a random moment while
// several clients write in parallel, three on one key and three on keys of their own.
TEST_F(gateway_test, KillAtEachProtocolPointLeavesEveryoneAgreeing) {
  const int rounds_per_point = static_cast<int>(it::env_size("DATASHARE_CHAOS_ROUNDS", 10));
  const auto seed = static_cast<std::uint64_t>(
      it::env_size("DATASHARE_CHAOS_SEED", static_cast<long>(std::random_device{}() & 0x7fffffff)));
  std::cout << "coordinator-kill: DATASHARE_CHAOS_SEED=" << seed << " replays this run" << std::endl;
  SCOPED_TRACE("DATASHARE_CHAOS_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const auto began = std::chrono::steady_clock::now();
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "v0"}, {"price", 1}}).status, 200);
  expect_all("k", "v0", "start");
  gateway_->kill();
  int round = 0, kills = 0, mismatches = 0, locks_left = 0, lost = 0, transactions = 1;
  auto agree = [&](const std::string& key, const std::string& name, const std::string& context) {
    auto h = holdings(key);
    bool same = std::all_of(h.begin(), h.end(), [&](const std::string& v) { return v == json(name).dump(); });
    if (!same) ++mismatches;
    expect_all(key, name, context);
  };
  std::string current = "v0";
  for (const char* point : {"after-prepare", "after-decision", "during-commit"}) {
    const bool decision = std::string(point) == "after-decision";
    for (int i = 0; i < rounds_per_point; ++i, ++round) {
      // after-decision: nth counts transactions (the earlier ones commit); else votes or acks.
      const int nth = pick(1, 3), first = pick(0, static_cast<int>(nodes_.size()) - 1);
      const std::string spec = std::string(point) + ":" + std::to_string(nth) + ":" + std::to_string(first);
      const std::string context = spec + " #" + std::to_string(i);
      gateway_->start(spec);
      ASSERT_TRUE(it::wait_until([&] { return it::http_call(admin_port_, "GET", "/readyz").status == 200; }, 30s))
          << gateway_->log();
      for (int before = 1; decision && before < nth; ++before) {
        std::string name = "v" + std::to_string(round + 1) + "." + std::to_string(before);
        auto r = put("k", {{"name", name}, {"price", round}});
        ++transactions;
        ASSERT_EQ(r.status, 200) << context << ": " << r.body;
        current = name;
      }
      std::string next = "v" + std::to_string(round + 1);
      auto r = put("k", {{"name", next}, {"price", round}});
      ++transactions;
      EXPECT_EQ(r.status, 0) << context << ": the gateway answered instead of dying: " << r.body;
      ASSERT_EQ(gateway_->reap(10s), 128 + SIGKILL) << context << "\n" << gateway_->log();
      ++kills;
      start_gateway();
      // Recovery finished before /readyz: all old (undecided) or all new (decided), nothing locked.
      if (std::string(point) != "after-prepare") current = next;
      agree("k", current, context);
      std::string check = "check" + std::to_string(round);
      auto after = put("k", {{"name", check}});
      ++transactions;
      if (after.status != 200) ++locks_left;
      EXPECT_EQ(after.status, 200) << context << ": a lock was left behind: " << after.body;
      agree("k", check, context + " (next update)");
      current = check;
      gateway_->kill();
    }
  }

  // Parallel writers, killed at a random moment: per key, every participant holds the same
  // value, which is the answered (200) one of the highest version or one that was never
  // answered (in flight at the kill), at a version not below any answered one; no lock left.
  struct attempt {
    std::string name;
    int status = 0;
    std::uint64_t version = 0;
  };
  const int parallel_rounds = std::max(1, rounds_per_point / 3);
  const std::vector<std::string> keys = {"p0", "p1", "p2", "p3"};
  // What each key held before the round (the last round's check update): what it still holds
  // when nothing of this round committed on it (a kill before any).
  std::map<std::string, std::string> before;
  for (const auto& key : keys) before[key] = "<404>";
  for (int pr = 0; pr < parallel_rounds; ++pr, ++round) {
    const int delay_ms = pick(20, 400);
    const std::string context = "parallel #" + std::to_string(pr) + " (kill after " + std::to_string(delay_ms) + " ms)";
    start_gateway();
    std::atomic<bool> stop{false};
    std::vector<std::vector<attempt>> tried(6);
    std::vector<std::thread> writers;
    for (int w = 0; w < 6; ++w) {
      writers.emplace_back([&, w] {
        const std::string& key = keys[w < 3 ? 0 : w - 2];
        for (int n = 0; !stop.load(); ++n) {
          attempt a;
          a.name = "p" + std::to_string(pr) + ".w" + std::to_string(w) + "." + std::to_string(n);
          auto r = put(key, {{"name", a.name}});
          a.status = r.status;
          if (r.status == 200) a.version = std::stoull(r.headers["datashare-version"]);
          tried[static_cast<std::size_t>(w)].push_back(a);
          if (r.status == 0) return;  // the gateway is gone
          if (r.status == 409) std::this_thread::sleep_for(1ms);
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    gateway_->kill();
    ++kills;
    stop = true;
    for (auto& t : writers) t.join();
    start_gateway();
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const auto& key = keys[k];
      std::uint64_t best = 0;
      std::string best_name;
      std::set<std::string> unanswered;
      for (int w = 0; w < 6; ++w) {
        if (keys[w < 3 ? 0 : static_cast<std::size_t>(w - 2)] != key) continue;
        for (const auto& a : tried[static_cast<std::size_t>(w)]) {
          transactions++;
          if (a.status == 0) unanswered.insert(a.name);
          if (a.status == 200 && a.version > best) {
            best = a.version;
            best_name = a.name;
          }
        }
      }
      auto h = holdings(key);
      bool same = std::all_of(h.begin(), h.end(), [&](const std::string& v) { return v == h[0]; });
      if (!same) ++mismatches;
      EXPECT_TRUE(same) << context << " " << key << ": " << json(h).dump();
      const bool held_ok =
          (best != 0 && h[0] == json(best_name).dump()) ||
          (h[0].size() > 2 && h[0].front() == '"' && unanswered.count(json::parse(h[0]).get<std::string>()) != 0) ||
          (best == 0 && h[0] == before[key]);
      for (std::size_t c = 1; c < nodes_.size(); ++c) {
        auto r = it::http_call(nodes_[c].data_port, "GET", "/v1/data/products/" + key);
        std::uint64_t held = r.status == 200 ? std::stoull(r.headers["datashare-version"]) : 0;
        if (held < best) ++lost;
        EXPECT_GE(held, best) << context << " " << key << " at " << nodes_[c].name
                              << ": an answered commit was lost (held " << h[c] << ")";
      }
      if (!held_ok) ++lost;
      EXPECT_TRUE(held_ok) << context << " " << key << " holds " << h[0] << ", neither the last answered (" << best_name
                           << ") nor one in flight at the kill (nor, none answered, " << before[key] << ")";
      std::string check = "check" + std::to_string(round) + key;
      before[key] = json(check).dump();
      auto after = put(key, {{"name", check}});
      ++transactions;
      if (after.status != 200) ++locks_left;
      EXPECT_EQ(after.status, 200) << context << " " << key << ": a lock was left behind: " << after.body;
      agree(key, check, context + " " + key + " (next update)");
    }
    gateway_->kill();
  }
  it::chaos_line(
      "coordinator-kill",
      {{"transactions", std::to_string(transactions)},
       {"kills", std::to_string(kills)},
       {"points", "after-prepare,after-decision,during-commit,parallel"},
       {"seed", std::to_string(seed)},
       {"participants", std::to_string(nodes_.size())},
       {"mismatches", std::to_string(mismatches)},
       {"locks_left", std::to_string(locks_left)},
       {"lost", std::to_string(mismatches + locks_left + lost)},
       {"seconds",
        std::to_string(
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began).count())}});
}

TEST_F(gateway_test, ParticipantsFinishADecidedTransactionWithoutTheCoordinator) {
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "old"}}).status, 200);
  // One participant committed, then the coordinator died and stays down: the others, overdue
  // after lockTimeout (1 s), find no coordinator, ask their peers and learn "committed".
  ASSERT_NO_FATAL_FAILURE(put_into_crash("during-commit", "k", {{"name", "new"}}));
  auto h = holdings("k");
  EXPECT_EQ(h[0], json("new").dump()) << "the owner committed";
  EXPECT_EQ(h[1], json("old").dump()) << "a copy only prepared: readers see the old value";
  ASSERT_TRUE(it::wait_until([&] { return holdings("k") == std::vector<std::string>(3, json("new").dump()); }, 20s))
      << "holdings: " << json(holdings("k")).dump();
}

// A copy read while a transaction holds the key there (prepared, maybe committed elsewhere)
// says how long it has: Datashare-Staleness-Ms is 0 only when no transaction holds the key at
// the copy (none can commit without the copy's vote).
TEST_F(gateway_test, ACopyReadOfAKeyATransactionHoldsSaysHowStaleItMayBe) {
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "old"}}).status, 200);
  auto staleness = [&](const std::string& target) {
    auto r = it::http_call(nodes_[1].data_port, "GET", target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    return std::stoll(r.headers["datashare-staleness-ms"]);
  };
  EXPECT_EQ(staleness("/v1/data/products/k"), 0);
  // The owner committed, the copies only prepared.
  ASSERT_NO_FATAL_FAILURE(put_into_crash("during-commit:1:0", "k", {{"name", "new"}}));
  ASSERT_EQ(holdings("k")[1], json("old").dump()) << "the copy still serves the old value";
  std::this_thread::sleep_for(200ms);
  EXPECT_GE(staleness("/v1/data/products/k"), 200) << "the copy was not told of the commit";
  EXPECT_GE(staleness("/v1/data/products?keys=k,other"), 200) << "a batch: its keys' most";
  EXPECT_GE(staleness("/v1/data/products?limit=10"), 200) << "a scan: its keys' most";
  EXPECT_EQ(staleness("/v1/data/products?keys=other"), 0) << "a key nobody holds";
  // Overdue after lockTimeout, the copies learn "committed" from the owner and apply it.
  ASSERT_TRUE(it::wait_until([&] { return holdings("k") == std::vector<std::string>(3, json("new").dump()); }, 20s));
  EXPECT_EQ(staleness("/v1/data/products/k"), 0);
}

TEST_F(gateway_test, AnUndecidedTransactionIsAbortedByPeersWithoutTheCoordinator) {
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "old"}, {"price", 1}}).status, 200);
  // The owner prepared (its service already holds the new value), the copies were never asked,
  // the coordinator stays down. The owner, overdue, asks its peers: they never voted, so they
  // abort on the spot and say so; the owner compensates.
  ASSERT_NO_FATAL_FAILURE(put_into_crash("after-prepare", "k", {{"name", "new"}, {"price", 2}}));
  EXPECT_EQ(holdings("k")[0], json("new").dump()) << "the owner applied the change at prepare";
  ASSERT_TRUE(it::wait_until([&] { return holdings("k") == std::vector<std::string>(3, json("old").dump()); }, 20s))
      << "holdings: " << json(holdings("k")).dump();
  auto o = owner_.call("GET", "/products/k");
  EXPECT_EQ(json::parse(o.body), json::parse(R"({"id":"k","name":"old","price":1})"));
  start_gateway();
  EXPECT_EQ(put("k", {{"name", "next"}}).status, 200) << "no lock left";
  expect_all("k", "next", "after the coordinator came back");
}

TEST_F(gateway_test, AParticipantThatDiesAfterPrepareConvergesWhenItComesBack) {
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "old"}}).status, 200);
  ASSERT_NO_FATAL_FAILURE(put_into_crash("after-decision", "k", {{"name", "new"}}));
  // Prepared everywhere, decided, nobody told. Copy 2 dies before hearing anything.
  nodes_[2].process->kill(SIGKILL);
  nodes_[2].process->wait();
  start_gateway();  // recovery commits at the owner and copy 1; copy 2 stays in the retry queue
  auto h = holdings("k");
  EXPECT_EQ(h[0], json("new").dump());
  EXPECT_EQ(h[1], json("new").dump());
  nodes_[2].process->start();
  ASSERT_TRUE(it::wait_until([&] { return holdings("k")[2] == json("new").dump(); }, 20s)) << nodes_[2].process->log();
  ASSERT_TRUE(it::wait_until(
      [&] {
        auto m = it::http_call(admin_port_, "GET", "/metrics");
        return m.body.find("datashare_gateway_in_doubt 0") != std::string::npos;
      },
      10s));
  EXPECT_EQ(put("k", {{"name", "after"}}).status, 200);
  expect_all("k", "after", "after the copy came back");
}

// The owner's app writing directly (PUT to its sidecar's publisher) a key that a gateway
// transaction holds prepared: refused, 409 naming the transaction, as a prepare of another
// transaction would be. Published, it would have raised the key's version floor over the
// transaction's version, and the commit would have been refused and retried (in doubt) for ever.
TEST_F(gateway_test, ADirectOwnerWriteOfAKeyATransactionHoldsIsRefused) {
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "old"}}).status, 200);
  ASSERT_NO_FATAL_FAILURE(put_into_crash("after-decision", "k", {{"name", "new"}}));
  // Prepared everywhere and decided; nobody told.
  auto direct = it::http_call(nodes_[0].data_port, "PUT", "/v1/data/products/k", R"({"name":"direct"})");
  ASSERT_EQ(direct.status, 409) << direct.body;
  EXPECT_FALSE(direct.headers["retry-after"].empty());
  const std::string tx = json::parse(direct.body).value("transaction", "");
  ASSERT_FALSE(tx.empty()) << direct.body;
  auto q = it::http_call(nodes_[0].participant_port, "GET", "/v1/tx/" + tx + "?product=products");
  EXPECT_NE(q.body.find("prepared"), std::string::npos) << "the transaction it names holds the key: " << q.body;
  EXPECT_EQ(it::http_call(nodes_[0].data_port, "PUT", "/v1/data/products/other", R"({"name":"free"})").status, 202)
      << "other keys are not held";
  start_gateway();  // recovery commits everywhere
  expect_all("k", "new", "after recovery");
  ASSERT_TRUE(it::wait_until(
      [&] {
        return it::http_call(admin_port_, "GET", "/metrics").body.find("datashare_gateway_in_doubt 0") !=
               std::string::npos;
      },
      10s))
      << "the commit was refused at the owner";
  EXPECT_EQ(it::http_call(nodes_[0].data_port, "PUT", "/v1/data/products/k", R"({"name":"direct"})").status, 202)
      << "free once committed";
}

TEST_F(gateway_test, AFailedPrepareAbortsEveryoneAndCompensatesTheOwner) {
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "old"}, {"price", 1}}).status, 200);
  // The owner refuses the change: nothing changes anywhere, the client learns who failed.
  owner_.fail_next(1, 500);
  auto r = put("k", {{"name", "new"}});
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(json::parse(r.body)["participant"], "owner") << r.body;
  expect_all("k", "old", "owner refused");
  // A copy is gone: the owner had applied the change at prepare and is put back.
  nodes_[1].process->kill(SIGKILL);
  nodes_[1].process->wait();
  r = put("k", {{"name", "new"}, {"price", 2}});
  EXPECT_TRUE(r.status == 503 || r.status == 504) << r.status << " " << r.body;
  EXPECT_EQ(json::parse(r.body)["participant"], "copy1") << r.body;
  auto o = owner_.call("GET", "/products/k");
  EXPECT_EQ(json::parse(o.body), json::parse(R"({"id":"k","name":"old","price":1})")) << "owner compensated";
  EXPECT_EQ(holdings("k")[2], json("old").dump());
  nodes_[1].process->start();
  ASSERT_TRUE(it::wait_until([&] { return it::http_call(nodes_[1].data_port, "GET", "/healthz").status == 200; }, 30s));
  ASSERT_TRUE(it::wait_until([&] { return put("k", {{"name", "later"}}).status == 200; }, 20s));
  expect_all("k", "later", "after the copy came back");
  // The owner's no vote and the copy's failure: aborted (the copy's maybe a timeout), each
  // failing participant counted (the copy again for every abort it missed), the others not.
  EXPECT_EQ(metric(outcome("committed")), 2);
  EXPECT_GE(metric(outcome("aborted")), 1);
  EXPECT_EQ(metric(outcome("aborted")) + metric(outcome("timeout")), 2);
  EXPECT_EQ(metric(participant_errors("owner")), 1);
  EXPECT_GE(metric(participant_errors("copy1")), 1);
  EXPECT_EQ(metric(participant_errors("copy2")), 0);
  EXPECT_GE(metric("datashare_gateway_transaction_duration_seconds_count"), 4);
}

// A participant that does not answer the prepare within transaction.timeout (3 s): 504 naming
// it, everyone aborted, counted as a timeout and as the participant's error.
TEST_F(gateway_test, APrepareThatOutlastsTheTimeoutIs504AndCountedAsATimeout) {
  start_gateway();
  ASSERT_EQ(put("k", {{"name", "old"}}).status, 200);
  nodes_[2].process->kill(SIGSTOP);
  std::thread wake([&] {
    std::this_thread::sleep_for(3500ms);  // past the timeout, before the abort's own deadline
    nodes_[2].process->kill(SIGCONT);
  });
  auto r = put("k", {{"name", "late"}});
  wake.join();
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(json::parse(r.body)["participant"], "copy2") << r.body;
  expect_all("k", "old", "timed out");
  EXPECT_EQ(metric(outcome("timeout")), 1);
  EXPECT_EQ(metric(outcome("aborted")), 0);
  EXPECT_EQ(metric(outcome("committed")), 1);
  EXPECT_GE(metric(participant_errors("copy2")), 1);
  EXPECT_EQ(metric(participant_errors("owner")), 0);
  EXPECT_EQ(metric("datashare_gateway_transaction_duration_seconds_count"), 2);
  // Its duration is in the histogram: at least the timeout.
  EXPECT_GE(metric("datashare_gateway_transaction_duration_seconds_sum"), 3.0);
  ASSERT_TRUE(it::wait_until([&] { return put("k", {{"name", "after"}}).status == 200; }, 20s));
  expect_all("k", "after", "after the copy woke up");
}

TEST_F(gateway_test, FiftyWritersOnFiveKeysEndInOneSerialOrder) {
  start_gateway();
  std::mutex mu;
  std::map<std::string, std::pair<std::uint64_t, std::string>> latest;
  std::atomic<int> committed{0}, conflicts{0}, failures{0};
  std::vector<std::thread> writers;
  writers.reserve(50);
  for (int w = 0; w < 50; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 4; ++i) {
        std::string key = "key" + std::to_string((w + i) % 5);
        std::string name = "w" + std::to_string(w) + "." + std::to_string(i);
        for (int attempt = 0; attempt < 200; ++attempt) {
          auto r = put(key, {{"name", name}});
          if (r.status == 409) {
            conflicts.fetch_add(1);
            std::this_thread::sleep_for(std::chrono::milliseconds(2 + attempt % 10));
            continue;
          }
          if (r.status != 200) {
            failures.fetch_add(1);
            break;
          }
          committed.fetch_add(1);
          std::uint64_t v = std::stoull(r.headers["datashare-version"]);
          std::lock_guard lock(mu);
          if (v > latest[key].first) latest[key] = {v, name};
          break;
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(committed.load(), 200) << "every update eventually committed (" << conflicts.load() << " conflicts)";
  ASSERT_EQ(latest.size(), 5u);
  for (const auto& [key, v] : latest) expect_all(key, v.second, key);
  // Every 409 a client got is a conflict (the key held here, or at a participant); the duration
  // is observed for each transaction that reached the participants (not the 409s answered here).
  EXPECT_EQ(metric(outcome("committed")), 200);
  EXPECT_EQ(metric(outcome("conflict")), conflicts.load());
  EXPECT_EQ(metric(outcome("aborted")), 0);
  EXPECT_EQ(metric(outcome("timeout")), 0);
  const double observed = metric("datashare_gateway_transaction_duration_seconds_count");
  EXPECT_GE(observed, 200);
  EXPECT_LE(observed, 200 + conflicts.load());
  for (const auto& n : nodes_) EXPECT_EQ(metric(participant_errors(n.name)), 0) << n.name;
}

TEST_F(gateway_test, BadRequestsAre400AndLockNothing) {
  start_gateway();
  struct bad {
    std::string method, target, body, reason;
  };
  for (const auto& b : std::vector<bad>{
           {"PUT", "/v1/data/orders/k", R"({"name":"x"})", "unknown product"},
           {"PUT", "/v1/data/products/k", R"({"ratng":5})", "unknown field"},
           {"PUT", "/v1/data/products/k", R"({"price":"cheap"})", "price"},
           {"PUT", "/v1/data/products/k", "not json", "JSON object"},
           {"PUT", "/v1/data/products/k", R"({"id":"other"})", "must equal the key"},
           {"PUT", "/v1/data/products/", R"({})", "missing or malformed key"},
           {"PUT", "/v1/data/products/%zz", R"({})", "missing or malformed key"},
       }) {
    auto r = it::http_call(gw_port_, b.method, b.target, b.body);
    EXPECT_EQ(r.status, 400) << b.target << " " << b.body << ": " << r.body;
    EXPECT_NE(r.body.find(b.reason), std::string::npos) << r.body;
  }
  EXPECT_EQ(owner_.stats().puts, 0u) << "nothing reached a participant";
  EXPECT_EQ(put("k", {{"name", "fine"}}).status, 200);
  auto m = it::http_call(admin_port_, "GET", "/metrics").body;
  EXPECT_NE(m.find("datashare_gateway_transactions_total{outcome=\"invalid\"} 7"), std::string::npos) << m;
  EXPECT_EQ(metric(outcome("committed")), 1);
  EXPECT_EQ(metric("datashare_gateway_transaction_duration_seconds_count"), 1) << "a 400 is not a transaction";
}

TEST_F(gateway_test, TheCommittedValueIsPublishedAsAnEvent) {
  start_gateway();
  auto r = put("evt", {{"name", "published"}, {"price", 4}, {"supplierEmail", "s@example.com"}});
  ASSERT_EQ(r.status, 200) << r.body;
  std::string version = r.headers["datashare-version"];
  ASSERT_FALSE(version.empty());
  const std::string line = topic_line("evt");
  ASSERT_FALSE(line.empty()) << "no event of evt in the topic within 20 s";
  EXPECT_NE(line.find("datashare_version=" + version), std::string::npos) << line;
  EXPECT_NE(line.find("ce_type=io.datashare.products.updated"), std::string::npos) << line;
  auto value = json::parse(line.substr(line.rfind('|') + 1));
  EXPECT_EQ(value, json::parse(R"({"id":"evt","name":"published","price":4})")) << "restricted field not published";
}

// An owner sidecar upgraded from a release that kept the participant's records in a store of
// their own (dataDir/participant/<product>): at start they move into the outbox's store (one
// fsync'd copy, then the old store removed), and what they say still holds: a committed
// transaction whose publish was pending is published, with its version.
TEST_F(gateway_test, AnOwnerSidecarOfTheOldLayoutTakesUpItsRecords) {
  auto& o = nodes_[0];
  o.process->kill(SIGKILL);
  o.process->wait();
  const std::string old_dir = o.dir->path() + "/data/participant/products";
  {
    std::string error;
    auto kv = sidecar::store::open_rocksdb(old_dir, {}, error);
    ASSERT_TRUE(kv) << error;
    sidecar::store::write_batch b;  // a record as the releases before 2026-12-03 18:40 wrote it
    b.put("ttx-old", R"({"deleted":false,"hadPrevious":false,"key":"kold","peers":[],"previous":"",)"
                     R"("published":false,"since":12,"state":"committed",)"
                     R"("value":"{\"id\":\"kold\",\"name\":\"from the old layout\"}","version":77})");
    ASSERT_FALSE(kv->write(b, true));
  }
  o.process->start();
  ASSERT_TRUE(it::wait_until([&] { return it::http_call(o.data_port, "GET", "/healthz").status == 200; }, 30s))
      << o.process->log();
  EXPECT_FALSE(std::filesystem::exists(old_dir)) << o.process->log();
  EXPECT_NE(o.process->log().find("moved 1 entries"), std::string::npos) << o.process->log();
  auto q = it::http_call(o.participant_port, "GET", "/v1/tx/tx-old?product=products");
  EXPECT_EQ(q.status, 200) << q.body;
  EXPECT_NE(q.body.find("committed"), std::string::npos) << q.body;
  const std::string line = topic_line("kold");
  ASSERT_FALSE(line.empty()) << "no event of kold in the topic within 20 s\n" << o.process->log();
  EXPECT_NE(line.find("datashare_version=77"), std::string::npos) << line;
  // The transactions after the upgrade commit everywhere, as before.
  start_gateway();
  ASSERT_EQ(put("knew", {{"name", "after"}}).status, 200);
  expect_all("knew", "after", "after the upgrade");
}

}  // namespace
}  // namespace datashare::gateway
