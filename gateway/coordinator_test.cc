#include "gateway/coordinator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/thread_pool.h"
#include "sidecar/http/server.h"
#include "sidecar/participant/participant.h"
#include "sidecar/participant/protocol.h"
#include "sidecar/replica/replica.h"
#include "sidecar/store/memory_kv.h"

namespace datashare::gateway {
namespace {
namespace fs = std::filesystem;
namespace sp = sidecar::participant;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

sidecar::config::product_schema products() {
  return {"products",
          "catalog",
          "id",
          {{"id", sidecar::config::field_type::string},
           {"name", sidecar::config::field_type::string},
           {"price", sidecar::config::field_type::number}}};
}

class no_outcomes : public sp::outcome_api {
 public:
  std::string ask_coordinator(const std::string&) override { return ""; }
  std::string ask_peer(const std::string&, const std::string&, const std::string&, std::uint64_t) override {
    return "";
  }
};

// A real participant (copy role, in-memory store) behind an in-process link with fault injection.
struct fake_participant {
  explicit fake_participant(const std::string& participant_name,
                            const sidecar::config::product_schema& product = products())
      : name(participant_name) {
    sidecar::config::participate_spec spec;
    spec.product = "products";
    spec.role = sidecar::config::participant_role::copy;
    p = std::make_unique<sp::participant>(spec, product, std::vector<std::string>{"id", "name", "price"},
                                          std::make_unique<sidecar::store::memory_kv>(), nullptr, nullptr,
                                          std::make_unique<no_outcomes>());
  }
  std::string value(const std::string& key) const {
    sidecar::replica::item it;
    if (sidecar::replica::lookup(p->store(), key, it)) return "<absent>";
    return it.value;
  }

  std::string name;
  std::unique_ptr<sp::participant> p;
  std::atomic<bool> down{false};
  std::atomic<int> refuse_prepares{0};
  std::atomic<int> slow_prepare_ms{0};
};

// The links' threads, as the gateway's I/O threads answer its calls.
thread_pool& link_threads() {
  static thread_pool pool(8);
  return pool;
}

class fake_link : public participant_link {
 public:
  explicit fake_link(fake_participant& f) : f_(f) {}
  void call_async(const std::string& op, const std::string& tx, std::string body,
                  std::chrono::steady_clock::time_point deadline, callback done) override {
    link_threads().post([this, op, tx, body = std::move(body), deadline, done = std::move(done)] {
      done(call(op, tx, body, deadline));
    });
  }
  link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                  std::chrono::steady_clock::time_point deadline) override {
    link_reply out;
    if (f_.down) {
      out.error = f_.name + ": connection refused";
      return out;
    }
    sp::reply r;
    if (op == "prepare") {
      if (int ms = f_.slow_prepare_ms.load(); ms > 0) {
        std::this_thread::sleep_until(
            std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(ms)));
        if (std::chrono::steady_clock::now() >= deadline) {
          out.timed_out = true;
          out.error = "timed out";
          return out;
        }
      }
      if (f_.refuse_prepares.load() > 0) {
        f_.refuse_prepares.fetch_sub(1);
        out.answered = true;
        out.status = 503;
        out.body = R"({"vote":"no","reason":"owner unreachable"})";
        return out;
      }
      sp::prepare_request pr;
      EXPECT_EQ(sp::decode_prepare(body, pr), "");
      r = f_.p->prepare(tx, pr);
    } else if (op == "commit") {
      r = f_.p->commit(tx);
    } else {
      r = f_.p->abort(tx);
    }
    out.answered = true;
    out.status = r.status;
    out.body = r.body;
    return out;
  }

 private:
  fake_participant& f_;
};

class coordinator_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gwcoord-" + std::to_string(::getpid()) + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    for (const char* n : {"owner", "orders", "shipping"}) parts_.push_back(std::make_unique<fake_participant>(n));
    config_.product = products();
    config_.data_dir = dir_.string();
    config_.timeout = 1s;
    config_.participants = {{"owner", sidecar::config::participant_role::owner, "http://o:1"},
                            {"orders", sidecar::config::participant_role::copy, "http://c1:1"},
                            {"shipping", sidecar::config::participant_role::copy, "http://c2:1"}};
    metrics_ = std::make_unique<gateway_metrics>(config_.participants);
  }
  void TearDown() override {
    c_.reset();
    log_.reset();
    fs::remove_all(dir_);
  }

  // (Re)starts the coordinator on the same log, as after a crash.
  void start(std::vector<log_record> extra = {}) {
    c_.reset();
    log_.reset();
    std::vector<log_record> records;
    std::string error;
    log_ = decision_log::open(dir_.string(), records, error, log_options_);
    ASSERT_TRUE(log_) << error;
    records.insert(records.end(), extra.begin(), extra.end());
    std::vector<std::unique_ptr<participant_link>> links;
    for (std::size_t i = 0; i < parts_.size(); ++i) {
      links.push_back(link_for_ ? link_for_(i) : std::make_unique<fake_link>(*parts_[i]));
    }
    coordinator_options o;
    o.retry_backoff = 20ms;
    o.commit_call_timeout = 500ms;
    o.now = now_;
    if (remember_max_ != 0) o.remember_committed_max = remember_max_;
    c_ = std::make_unique<coordinator>(config_, std::move(links), *log_, *metrics_, o);
    c_->recover(records);
    ASSERT_TRUE(c_->ready());
  }

  void expect_everywhere(const std::string& key, const std::string& value) {
    for (auto& p : parts_) EXPECT_EQ(p->value(key), value) << p->name;
    for (auto& p : parts_) EXPECT_EQ(p->p->locked_keys(), 0u) << p->name;
  }

  fs::path dir_;
  gateway_config config_;
  std::vector<std::unique_ptr<fake_participant>> parts_;
  std::vector<std::unique_ptr<fake_link>> extra_links_;  // links a test wraps; they outlive c_
  std::unique_ptr<gateway_metrics> metrics_;
  log_options log_options_;                                                 // start() opens the log with them
  std::function<std::unique_ptr<participant_link>(std::size_t)> link_for_;  // start(): else a fake_link
  std::size_t remember_max_ = 0;                                            // start(): remember_committed_max when set
  std::function<std::chrono::steady_clock::time_point()> now_;              // start(): the coordinator's clock
  std::unique_ptr<decision_log> log_;
  std::unique_ptr<coordinator> c_;
};

TEST_F(coordinator_test, CommitsEverywhere) {
  start();
  auto r = c_->update("p1", R"({"name":"pen","price":2})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_GT(r.version, 0u);
  expect_everywhere("p1", R"({"id":"p1","name":"pen","price":2})");
  auto r2 = c_->update("p1", R"({"name":"pen","price":3})");
  ASSERT_EQ(r2.status, 200u);
  EXPECT_GT(r2.version, r.version);
  ASSERT_EQ(c_->update("p1", std::nullopt).status, 200u);
  expect_everywhere("p1", "<absent>");
  EXPECT_EQ(metrics_->committed.Value(), 3);
  auto tx = nlohmann::json::parse(r.body)["tx"].get<std::string>();
  EXPECT_EQ(c_->outcome(tx), "committed");
  EXPECT_EQ(c_->outcome("never-heard-of"), "aborted");
}

// Where a transaction's time goes (P5's tail, docs/benchmarks.md): each phase of a committed
// transaction observed once, each participant call once, and every fsync of the decision log
// reported with the commit records it made durable.
TEST_F(coordinator_test, PhasesCallsAndLogSyncsAreObserved) {
  std::atomic<std::size_t> syncs{0}, synced_commits{0};
  log_options_.on_sync = [&](std::chrono::steady_clock::duration took, std::size_t commits) {
    EXPECT_GE(took.count(), 0);
    ++syncs;
    synced_commits += commits;
  };
  start();
  ASSERT_EQ(c_->update("p1", R"({"name":"a"})").status, 200u);
  ASSERT_EQ(c_->update("p2", R"({"name":"b"})").status, 200u);
  parts_[1]->refuse_prepares = 1;
  ASSERT_EQ(c_->update("p3", R"({"name":"c"})").status, 503u);
  auto count = [](prometheus::Histogram& h) { return h.Collect().histogram.sample_count; };
  // The phases of the two committed ones only: the aborted one has no decision nor commit.
  for (auto* h : {&metrics_->phase_begin, &metrics_->phase_prepare, &metrics_->phase_decision, &metrics_->phase_commit})
    EXPECT_EQ(count(*h), 2u);
  for (const auto& p : config_.participants) {
    EXPECT_EQ(count(*metrics_->participant_prepare.at(p.name)), 3u) << p.name;
    EXPECT_EQ(count(*metrics_->participant_finish.at(p.name)), 3u) << p.name;  // 2 commits, 1 abort
  }
  EXPECT_GE(syncs.load(), 2u);  // the recovery's compaction is not an append, so not counted
  EXPECT_EQ(synced_commits.load(), 2u);
}

TEST_F(coordinator_test, OneNoVoteAbortsEveryoneAndNamesTheParticipant) {
  start();
  ASSERT_EQ(c_->update("p1", R"({"name":"old"})").status, 200u);
  parts_[2]->refuse_prepares = 1;
  auto r = c_->update("p1", R"({"name":"new"})");
  EXPECT_EQ(r.status, 503u);
  EXPECT_THAT(r.body, HasSubstr("shipping"));
  EXPECT_THAT(r.body, HasSubstr("owner unreachable"));
  expect_everywhere("p1", R"({"id":"p1","name":"old"})");
  EXPECT_EQ(metrics_->aborted.Value(), 1);
}

TEST_F(coordinator_test, AKeyHeldElsewhereIsAConflict) {
  start();
  sp::prepare_request pr{"products", "p1", false, R"({"id":"p1"})", 1, {}};
  ASSERT_EQ(parts_[1]->p->prepare("someone-else", pr).status, 200u);
  auto r = c_->update("p1", R"({"name":"x"})");
  EXPECT_EQ(r.status, 409u);
  EXPECT_THAT(r.body, HasSubstr("orders"));
  ASSERT_EQ(parts_[1]->p->abort("someone-else").status, 200u);
  expect_everywhere("p1", "<absent>");
  EXPECT_EQ(c_->update("p1", R"({"name":"x"})").status, 200u);
}

TEST_F(coordinator_test, ASlowParticipantTimesOut) {
  start();
  parts_[1]->slow_prepare_ms = 3000;
  auto r = c_->update("p1", R"({"name":"x"})");
  EXPECT_EQ(r.status, 504u);
  EXPECT_THAT(r.body, HasSubstr("transaction timeout"));
  EXPECT_THAT(r.body, HasSubstr("orders"));
  expect_everywhere("p1", "<absent>");
}

TEST_F(coordinator_test, BadRequestsLockNothing) {
  start();
  for (const char* body : {R"({"ratng":5})", R"({"price":"cheap"})", "[1]", "not json", R"({"id":"other"})"}) {
    auto r = c_->update("p1", std::string(body));
    EXPECT_EQ(r.status, 400u) << body;
  }
  EXPECT_THAT(c_->update("p1", R"({"ratng":5})").body, HasSubstr("product fields: id, name, price"));
  EXPECT_EQ(c_->update("", R"({})").status, 400u);
  EXPECT_EQ(c_->update("p1", R"({"name":"ok"})").status, 200u) << "nothing was left locked";
}

// The CRD allows integer keys: the path's key is then the number the key field holds.
TEST_F(coordinator_test, AnIntegerKeyIsTheNumberInThePath) {
  auto orders = products();
  orders.fields[0].type = sidecar::config::field_type::integer;
  config_.product = orders;
  parts_.clear();
  for (const char* n : {"owner", "orders", "shipping"}) parts_.push_back(std::make_unique<fake_participant>(n, orders));
  start();
  auto r = c_->update("42", R"({"id":42,"name":"pen"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  expect_everywhere("42", R"({"id":42,"name":"pen"})");
  r = c_->update("-7", R"({"name":"ink"})");  // absent: inserted as the number
  ASSERT_EQ(r.status, 200u) << r.body;
  expect_everywhere("-7", R"({"id":-7,"name":"ink"})");
  for (auto [key, body] : std::vector<std::pair<std::string, std::string>>{{"42", R"({"id":41})"},
                                                                           {"42", R"({"id":"42"})"},
                                                                           {"042", R"({"id":42})"},
                                                                           {"+42", R"({"name":"x"})"},
                                                                           {"4.2e1", R"({"name":"x"})"},
                                                                           {"abc", R"({"name":"x"})"}}) {
    EXPECT_EQ(c_->update(key, body).status, 400u) << key << " " << body;
  }
  EXPECT_THAT(c_->update("abc", R"({"name":"x"})").body, HasSubstr("not an integer"));
  EXPECT_THAT(c_->update("42", R"({"id":41})").body, HasSubstr("must equal the key in the path (42)"));
}

TEST_F(coordinator_test, AStringKeyIsTheStringInThePath) {
  start();
  ASSERT_EQ(c_->update("42", R"({"id":"42","name":"pen"})").status, 200u);
  ASSERT_EQ(c_->update("43", R"({"name":"ink"})").status, 200u);
  expect_everywhere("43", R"({"id":"43","name":"ink"})");
  EXPECT_EQ(c_->update("42", R"({"id":42})").status, 400u);
  EXPECT_EQ(c_->update("42", R"({"id":"042"})").status, 400u);
}

TEST_F(coordinator_test, AParticipantDownAtCommitIsRetriedUntilItAnswers) {
  start();
  // Prepared everywhere, then a copy goes away before the commit reaches it.
  struct flip : participant_link {
    flip(fake_participant& target, fake_link& wrapped) : f(target), inner(wrapped) {}
    link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                    std::chrono::steady_clock::time_point d) override {
      auto r = inner.call(op, tx, body, d);
      if (op == "prepare") f.down = true;
      return r;
    }
    fake_participant& f;
    fake_link& inner;
  };
  c_.reset();
  std::vector<std::unique_ptr<participant_link>> links;
  auto& l2 = *extra_links_.emplace_back(std::make_unique<fake_link>(*parts_[2]));
  links.push_back(std::make_unique<fake_link>(*parts_[0]));
  links.push_back(std::make_unique<fake_link>(*parts_[1]));
  links.push_back(std::make_unique<flip>(*parts_[2], l2));
  coordinator_options o;
  o.retry_backoff = 20ms;
  o.commit_call_timeout = 200ms;
  c_ = std::make_unique<coordinator>(config_, std::move(links), *log_, *metrics_, o);
  c_->recover({});
  auto r = c_->update("p1", R"({"name":"x"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_THAT(r.body, HasSubstr("pending"));
  EXPECT_EQ(c_->in_doubt(), 1u);
  EXPECT_EQ(c_->update("p1", R"({"name":"y"})").status, 409u) << "the key stays taken until every copy has it";
  parts_[2]->down = false;
  // Retries run every 20 ms; the bound only keeps a broken build from hanging (sanitizers and a
  // loaded CI machine stretch each round).
  for (int i = 0; i < 3000 && c_->in_doubt() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(c_->in_doubt(), 0u);
  expect_everywhere("p1", R"({"id":"p1","name":"x"})");
}

// The answer is not the end of a transaction: the `commit` record's callback (on the log's
// writer thread) sends the commits one after the other, and the last one can be acknowledged,
// and the client answered, before that callback has left its loop over the participants. Here
// the last participant's link answers on another thread and only returns from call_async 200 ms
// later, so the test's stop() and destruction happen inside that window. Before the coordinator
// counted its outstanding steps, it was freed while the writer thread still used it (ASan:
// heap-use-after-free in start_round; TSan: a race with operator delete).
TEST_F(coordinator_test, StopWaitsForTheStepsThatFollowTheAnswer) {
  start();
  struct late_return : participant_link {
    late_return(fake_link& wrapped, std::shared_ptr<std::atomic<bool>> flag) : inner(wrapped), returned(flag) {}
    link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                    std::chrono::steady_clock::time_point d) override {
      return inner.call(op, tx, body, d);
    }
    void call_async(const std::string& op, const std::string& tx, std::string body,
                    std::chrono::steady_clock::time_point d, callback done) override {
      if (op != "commit") {
        inner.call_async(op, tx, std::move(body), d, std::move(done));
        return;
      }
      // No member of this link is touched after the answer: the coordinator owns it.
      auto flag = returned;
      auto answered = std::make_shared<std::atomic<bool>>(false);
      inner.call_async(op, tx, std::move(body), d, [answered, done = std::move(done)](link_reply r) {
        done(std::move(r));
        answered->store(true);
      });
      for (int i = 0; i < 1000 && !answered->load(); ++i) std::this_thread::sleep_for(5ms);
      std::this_thread::sleep_for(200ms);
      flag->store(true);
    }
    fake_link& inner;
    std::shared_ptr<std::atomic<bool>> returned;  // set when call_async returns, after the answer
  };
  c_.reset();
  std::vector<std::unique_ptr<participant_link>> links;
  auto& l2 = *extra_links_.emplace_back(std::make_unique<fake_link>(*parts_[2]));
  links.push_back(std::make_unique<fake_link>(*parts_[0]));
  links.push_back(std::make_unique<fake_link>(*parts_[1]));
  auto returned = std::make_shared<std::atomic<bool>>(false);
  links.push_back(std::make_unique<late_return>(l2, returned));
  c_ = std::make_unique<coordinator>(config_, std::move(links), *log_, *metrics_);
  c_->recover({});
  auto r = c_->update("p1", R"({"name":"x"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  c_->stop();
  EXPECT_TRUE(returned->load()) << "stop() returned while the commit round still ran";
  EXPECT_EQ(c_->update("p2", R"({"name":"y"})").status, 503u) << "a stopped coordinator starts nothing";
  c_.reset();
  expect_everywhere("p1", R"({"id":"p1","name":"x"})");
  expect_everywhere("p2", "<absent>");
}

TEST_F(coordinator_test, RecoveryCommitsWhatWasDecidedAndAbortsTheRest) {
  // What a crash leaves: tx "decided" prepared everywhere and logged committed; tx "undecided"
  // prepared at two participants and only begun in the log.
  auto prep = [&](const std::string& tx, const std::string& key, const std::string& value, std::size_t n) {
    sp::prepare_request pr{"products", key, false, value, 5, {}};
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(parts_[i]->p->prepare(tx, pr).status, 200u);
  };
  // Ids of new_tx_id's form (32 hex digits): outcome() remembers only those (as their bits).
  const std::string decided = "000000000000000000000000000dec1d", undecided = "0000000000000000000000000000abcd";
  prep(decided, "a", R"({"id":"a","name":"new"})", 3);
  prep(undecided, "b", R"({"id":"b","name":"new"})", 2);
  auto rec = [](char type, const std::string& tx, const std::string& key) {
    log_record r;
    r.type = type;
    r.tx = tx;
    r.key = key;
    r.version = 5;
    r.value = R"({"id":")" + key + R"(","name":"new"})";
    r.participants = {"owner", "orders", "shipping"};
    return r;
  };
  start({rec('B', decided, "a"), rec('C', decided, "a"), rec('B', undecided, "b")});
  expect_everywhere("a", R"({"id":"a","name":"new"})");
  expect_everywhere("b", "<absent>");
  EXPECT_EQ(c_->outcome(decided), "committed");
  EXPECT_EQ(c_->outcome(undecided), "aborted");
  // Recovery compacted the log: a second restart has nothing left to do.
  start();
  EXPECT_EQ(c_->in_doubt(), 0u);
}

// The id of the transaction a participant holds a record of (its only one).
std::string only_tx(const fake_participant& f) {
  std::vector<sidecar::store::entry> records;
  EXPECT_FALSE(f.p->store().scan("t", "u", 10, records));
  EXPECT_EQ(records.size(), 1u);
  return records.empty() ? "" : records[0].first.substr(1);
}

// A participant asking for the outcome while the commit record is written but not yet on disk
// must not hear "committed": a crash before the fsync aborts the transaction at recovery (begin
// without commit), and it would have committed alone. Until 2026-12-03 outcome() said committed
// from the moment the last yes vote arrived.
TEST_F(coordinator_test, TheOutcomeIsCommittedOnlyOnceTheDecisionIsOnDisk) {
  struct gate {
    std::mutex mu;
    std::condition_variable cv;
    bool armed = false, holding = false, open = false;
  };
  auto g = std::make_shared<gate>();
  log_options_.before_sync = [g] {
    std::unique_lock lock(g->mu);
    if (!g->armed) return;
    g->holding = true;
    g->cv.notify_all();
    g->cv.wait(lock, [&] { return g->open; });
  };
  start();
  {
    std::lock_guard lock(g->mu);
    g->armed = true;
  }
  std::promise<update_result> answer;
  c_->update_async("p1", R"({"name":"x"})", [&answer](update_result r) { answer.set_value(std::move(r)); });
  {
    std::unique_lock lock(g->mu);
    ASSERT_TRUE(g->cv.wait_for(lock, 60s, [&] { return g->holding; })) << "the commit record was never synced";
  }
  std::string tx = only_tx(*parts_[1]);
  EXPECT_EQ(c_->outcome(tx), "pending") << "committed before the decision is on disk";
  {
    std::lock_guard lock(g->mu);
    g->open = true;
    g->armed = false;
  }
  g->cv.notify_all();
  auto r = answer.get_future().get();
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(c_->outcome(tx), "committed");
}

// The coordinator forgets a committed transaction (answers "aborted", presumed abort) only once
// every participant has acknowledged its commit (and remember_committed has passed): one that
// never acknowledges, for longer than that and across a restart, keeps hearing "committed" and
// keeps being sent the commit.
TEST_F(coordinator_test, ACommitNotAcknowledgedIsNeverForgotten) {
  auto offset = std::make_shared<std::atomic<std::int64_t>>(0);  // minutes added to the real clock
  now_ = [offset] { return std::chrono::steady_clock::now() + std::chrono::minutes(offset->load()); };
  // The third participant prepares every transaction but acknowledges no commit of the first one
  // while `mute` is set (it answers 503, as a participant whose disk fails would).
  auto mute = std::make_shared<std::atomic<bool>>(true);
  auto first = std::make_shared<std::string>();
  auto first_mu = std::make_shared<std::mutex>();
  struct muted : participant_link {
    fake_link inner;
    std::shared_ptr<std::atomic<bool>> mute;
    std::shared_ptr<std::string> first;
    std::shared_ptr<std::mutex> mu;
    muted(fake_participant& f, std::shared_ptr<std::atomic<bool>> m, std::shared_ptr<std::string> fst,
          std::shared_ptr<std::mutex> fmu)
        : inner(f), mute(std::move(m)), first(std::move(fst)), mu(std::move(fmu)) {}
    link_reply call(const std::string& op, const std::string& tx, const std::string& body,
                    std::chrono::steady_clock::time_point d) override {
      {
        std::lock_guard lock(*mu);
        if (first->empty()) *first = tx;
        if (op == "commit" && tx == *first && mute->load()) {
          link_reply out;
          out.answered = true;
          out.status = 503;
          out.body = R"({"error":"participant store: sync failed"})";
          return out;
        }
      }
      return inner.call(op, tx, body, d);
    }
  };
  link_for_ = [&](std::size_t i) -> std::unique_ptr<participant_link> {
    if (i == 2) return std::make_unique<muted>(*parts_[2], mute, first, first_mu);
    return std::make_unique<fake_link>(*parts_[i]);
  };
  start();
  auto r = c_->update("p1", R"({"name":"x"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_THAT(r.body, HasSubstr("pending"));
  std::string tx = only_tx(*parts_[2]);
  ASSERT_EQ(tx, *first);
  // Past the old expiry; another transaction ends (each one's end sweeps what may be forgotten).
  offset->store(11);
  ASSERT_EQ(c_->update("p2", R"({"name":"y"})").status, 200u);
  EXPECT_EQ(c_->outcome(tx), "committed");
  // And after a restart, from the log.
  start();
  offset->store(30);
  ASSERT_EQ(c_->update("p3", R"({"name":"z"})").status, 200u);
  EXPECT_EQ(c_->outcome(tx), "committed");
  EXPECT_EQ(c_->in_doubt(), 1u);
  // The participant acknowledges: the transaction ends, is remembered for remember_committed,
  // then forgotten.
  mute->store(false);
  for (int i = 0; i < 3000 && c_->in_doubt() != 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(c_->in_doubt(), 0u);
  expect_everywhere("p1", R"({"id":"p1","name":"x"})");
  EXPECT_EQ(c_->outcome(tx), "committed");
  offset->store(45);
  ASSERT_EQ(c_->update("p4", R"({"name":"w"})").status, 200u);
  EXPECT_EQ(c_->outcome(tx), "aborted") << "a fully acknowledged transaction is forgotten (bounded memory)";
}

// Beyond remember_committed_max fully acknowledged transactions, the oldest are forgotten first
// (bounded memory whatever the rate); the newer ones are still answered "committed".
TEST_F(coordinator_test, AtMostRememberCommittedMaxEndedTransactionsAreRemembered) {
  remember_max_ = 3;
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = c_->update("k" + std::to_string(i), R"({"name":"x"})");
    ASSERT_EQ(r.status, 200u) << r.body;
    ids.push_back(nlohmann::json::parse(r.body)["tx"].get<std::string>());
  }
  EXPECT_EQ(c_->outcome(ids[0]), "aborted");
  EXPECT_EQ(c_->outcome(ids[1]), "aborted");
  for (int i = 2; i < 5; ++i) EXPECT_EQ(c_->outcome(ids[static_cast<std::size_t>(i)]), "committed") << i;
  EXPECT_EQ(c_->outcome("not-an-id"), "aborted");
  EXPECT_EQ(c_->outcome(std::string(32, 'F')), "aborted");
}

TEST_F(coordinator_test, ConcurrentWritersOfFewKeysEndInOneSerialOrder) {
  start();
  std::atomic<int> committed{0}, conflicts{0}, other{0};
  std::mutex mu;
  std::map<std::string, std::pair<std::uint64_t, std::string>> last;  // key → highest committed version, value
  std::vector<std::thread> writers;
  writers.reserve(20);
  for (int w = 0; w < 20; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 10; ++i) {
        std::string key = "k" + std::to_string((w + i) % 5);
        std::string name = "w" + std::to_string(w) + "-" + std::to_string(i);
        auto r = c_->update(key, R"({"name":")" + name + R"("})");
        if (r.status == 200) {
          committed.fetch_add(1);
          std::lock_guard lock(mu);
          if (r.version > last[key].first) last[key] = {r.version, name};
        } else if (r.status == 409) {
          conflicts.fetch_add(1);
        } else {
          other.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(committed.load(), 0);
  for (const auto& [key, v] : last) {
    expect_everywhere(key, R"({"id":")" + key + R"(","name":")" + v.second + R"("})");
  }
}

// A commit record whose fsync fails may be on disk all the same (written before the failed
// fdatasync, or carried by a rotation's snapshot into a new, fsync'd segment). The coordinator
// must not abort then: until 2026-12-03 it aborted everywhere (an owner compensated), and the
// restart found the record and re-drove a commit the participants had already aborted. Now the
// transaction stays in doubt (participants prepared, `pending`, /healthz failing) and the
// restart decides from the disk.
TEST_F(coordinator_test, ACommitRecordWhoseFsyncFailedIsInDoubtUntilTheRestartDecides) {
  auto fail = std::make_shared<std::atomic<bool>>(true);
  log_options_.sync_fault = [fail]() -> std::error_code {
    if (fail->load()) return std::make_error_code(std::errc::io_error);
    return {};
  };
  start();
  auto r = c_->update("k", R"({"name":"new"})");
  EXPECT_EQ(r.status, 503u) << r.body;
  EXPECT_THAT(r.body, HasSubstr("decision log"));
  EXPECT_TRUE(c_->log_failure());
  // Counted as in doubt, under its own outcome: it was not aborted (the restart may commit it).
  EXPECT_EQ(c_->in_doubt(), 1u);
  EXPECT_EQ(metrics_->in_doubt.Value(), 1);
  EXPECT_EQ(metrics_->in_doubt_outcome.Value(), 1);
  EXPECT_EQ(metrics_->aborted.Value(), 0);
  // Nothing was sent after the votes: every participant holds the key prepared, nobody aborted.
  for (auto& p : parts_) {
    EXPECT_EQ(p->p->locked_keys(), 1u) << p->name;
    EXPECT_EQ(p->value("k"), "<absent>") << p->name;
  }
  // The key stays taken; the coordinator answers `pending` to the participants' questions.
  EXPECT_EQ(c_->outcome(nlohmann::json::parse(r.body)["tx"].get<std::string>()), "pending");
  EXPECT_EQ(c_->update("k", R"({"name":"other"})").status, 409u);
  // The restart reads the commit record (it reached the segment) and commits everywhere.
  fail->store(false);
  start();
  EXPECT_FALSE(c_->log_failure());
  expect_everywhere("k", R"({"id":"k","name":"new"})");
  ASSERT_EQ(c_->update("k", R"({"name":"after"})").status, 200u);
}

// http_link against a real HTTP server: a call goes alone while nothing is in flight on the lane;
// what queues behind it goes as one POST /v1/batch, each caller getting its own answer.
class http_link_test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(server_.listen(
        "127.0.0.1", 0,
        [this](const sidecar::http::request& req, const sidecar::http::responder& respond) {
          std::string target(req.target());
          std::unique_lock lock(mu_);
          seen_.push_back(target + " " + req.body());
          if (target == "/v1/batch") {
            batch_types_.emplace_back(req[boost::beast::http::field::content_type]);
            if (refuse_batches_) {
              respond({404, "{}"});
              return;
            }
            std::vector<sp::batch_message> messages;
            EXPECT_EQ(sp::decode_batch(req.body(), messages), "");
            std::string body;
            for (const auto& m : messages) sp::append_batch_answer(body, 200, "batched " + m.op + " " + m.tx);
            respond({200, std::move(body)});
            return;
          }
          if (target == "/v1/tx/t0/prepare" && hold_first_) {
            parked_.push_back(respond);
            cv_.notify_all();
            return;
          }
          respond({target == "/v1/tx/t5/abort" ? 409u : 200u, "single " + target});
        },
        port_));
    server_.start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    release();
    server_.stop();
    work_.reset();
    ioc_.stop();
    thread_.join();
  }
  void release() {
    std::lock_guard lock(mu_);
    for (auto& r : parked_) r({200, "single /v1/tx/t0/prepare"});
    parked_.clear();
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{ioc_.get_executor()};
  std::thread thread_;
  sidecar::http::server server_{1};
  std::uint16_t port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_first_ = true;
  bool refuse_batches_ = false;
  std::vector<sidecar::http::responder> parked_;
  std::vector<std::string> seen_;
  std::vector<std::string> batch_types_;  // the Content-Type of each POST /v1/batch
};

TEST_F(http_link_test, CallsQueuedBehindAnInFlightOneGoAsOneBatch) {
  gateway_metrics metrics({});
  http_link link({&ioc_}, {"127.0.0.1", std::to_string(port_)}, 1, &metrics.call_messages);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<std::promise<link_reply>> replies(6);
  link.call_async("prepare", "t0", "{}", deadline, [&](link_reply r) { replies[0].set_value(std::move(r)); });
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, 10s, [this] { return !parked_.empty(); }));
  }
  const char* ops[] = {"prepare", "commit", "abort", "prepare", "abort"};
  for (int i = 1; i <= 5; ++i) {
    link.call_async(ops[i - 1], "t" + std::to_string(i), "body" + std::to_string(i), deadline,
                    [&, i](link_reply r) { replies[i].set_value(std::move(r)); });
  }
  // Nothing more reaches the participant while the first call is in flight.
  EXPECT_EQ(seen().size(), 1u);
  release();
  auto first = replies[0].get_future().get();
  ASSERT_TRUE(first.answered) << first.error;
  EXPECT_EQ(first.body, "single /v1/tx/t0/prepare");
  for (int i = 1; i <= 5; ++i) {
    auto r = replies[i].get_future().get();
    ASSERT_TRUE(r.answered) << r.error;
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, std::string("batched ") + ops[i - 1] + " t" + std::to_string(i));
  }
  auto all = seen();
  ASSERT_EQ(all.size(), 2u);
  std::vector<sp::batch_message> batch;
  ASSERT_EQ(all[1].rfind("/v1/batch ", 0), 0u) << all[1];
  ASSERT_EQ(sp::decode_batch(all[1].substr(10), batch), "");
  ASSERT_EQ(batch.size(), 5u);
  EXPECT_EQ(batch[2].op, "abort");
  EXPECT_EQ(batch[2].tx, "t3");
  EXPECT_EQ(batch[2].body, "body3");
  {
    std::lock_guard lock(mu_);
    EXPECT_THAT(batch_types_, ::testing::ElementsAre(std::string(sp::kBatchContentType)));
  }
  // Quiet again: the next call goes alone, at once.
  auto r = link.call("commit", "t6", "{}", std::chrono::steady_clock::now() + 10s);
  EXPECT_EQ(r.body, "single /v1/tx/t6/commit");
  // Three requests: two single calls and one batch of five.
  auto h = metrics.call_messages.Collect().histogram;
  EXPECT_EQ(h.sample_count, 3u);
  EXPECT_EQ(h.sample_sum, 7.0);
}

TEST_F(http_link_test, AParticipantWithoutBatchesGetsSingleCalls) {
  {
    std::lock_guard lock(mu_);
    refuse_batches_ = true;
  }
  http_link link({&ioc_}, {"127.0.0.1", std::to_string(port_)});
  auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<std::promise<link_reply>> replies(6);
  link.call_async("prepare", "t0", "{}", deadline, [&](link_reply r) { replies[0].set_value(std::move(r)); });
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, 10s, [this] { return !parked_.empty(); }));
  }
  for (int i = 1; i <= 5; ++i) {
    link.call_async(i == 5 ? "abort" : "commit", "t" + std::to_string(i), "", deadline,
                    [&, i](link_reply r) { replies[i].set_value(std::move(r)); });
  }
  release();
  for (int i = 0; i <= 5; ++i) {
    auto r = replies[i].get_future().get();
    ASSERT_TRUE(r.answered) << r.error;
    EXPECT_EQ(r.status, i == 5 ? 409u : 200u);
    EXPECT_EQ(r.body, "single /v1/tx/t" + std::to_string(i) + (i == 0 ? "/prepare" : i == 5 ? "/abort" : "/commit"));
  }
  // From then on no batch is tried: a burst goes as single calls.
  {
    std::lock_guard lock(mu_);
    hold_first_ = false;
  }
  std::vector<std::future<link_reply>> more;
  for (int i = 7; i < 12; ++i) {
    auto p = std::make_shared<std::promise<link_reply>>();
    more.push_back(p->get_future());
    link.call_async("commit", "t" + std::to_string(i), "", deadline, [p](link_reply r) { p->set_value(std::move(r)); });
  }
  for (auto& f : more) EXPECT_EQ(f.get().status, 200u);
  int batches = 0;
  for (const auto& s : seen()) batches += s.rfind("/v1/batch", 0) == 0 ? 1 : 0;
  EXPECT_EQ(batches, 1);
}

TEST(CrashPointTest, Parses) {
  EXPECT_EQ(parse_crash_point("after-decision")->at, crash_point::where::after_decision);
  EXPECT_EQ(parse_crash_point("during-commit:3")->nth, 3);
  EXPECT_FALSE(parse_crash_point("after-lunch"));
  EXPECT_FALSE(parse_crash_point("after-prepare:0"));
  auto c = parse_crash_point("during-commit:2:1");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->nth, 2);
  EXPECT_EQ(c->first, 1u);
  EXPECT_EQ(parse_crash_point("after-prepare:2")->first, 0u);
  EXPECT_FALSE(parse_crash_point("after-prepare:2:"));
  EXPECT_FALSE(parse_crash_point("after-prepare:2:x"));
}

}  // namespace
}  // namespace datashare::gateway
