#include "sidecar/participant/participant.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "common/thread_pool.h"
#include "sidecar/participant/migrate.h"
#include "sidecar/participant/service.h"
#include "sidecar/replica/layout.h"
#include "sidecar/replica/replica.h"
#include "sidecar/store/memory_kv.h"
#include "sidecar/store/rocksdb_kv.h"

namespace datashare::sidecar::participant {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A store shared by two participant objects in turn: a restart on the same data.
class shared_kv : public store::kv {
 public:
  explicit shared_kv(std::shared_ptr<store::memory_kv> inner) : inner_(std::move(inner)) {}
  std::error_code get(std::string_view key, std::string& value) const override { return inner_->get(key, value); }
  std::error_code write(const store::write_batch& b, bool sync) override { return inner_->write(b, sync); }
  std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                       std::vector<store::entry>& out) const override {
    return inner_->scan(begin, end, limit, out);
  }

 private:
  std::shared_ptr<store::memory_kv> inner_;
};

// A writer that writes a batch (and runs its callback) only when the test says so: the window
// between a record handed to the writer and its group on disk, held open. Open, its thread
// writes what is queued (never inside write(): the participant calls it with a mutex held that
// the callbacks take, as group_writer's thread does).
class gated_writer {
 public:
  explicit gated_writer(std::shared_ptr<store::memory_kv> kv) : kv_(std::move(kv)) {
    thread_ = std::thread([this] {
      std::unique_lock lock(mu_);
      for (;;) {
        cv_.wait(lock, [this] { return stopping_ || (open_ && !queued_.empty()); });
        if (queued_.empty()) return;
        auto p = std::move(queued_.front());
        queued_.pop_front();
        lock.unlock();
        p.done(kv_->write(p.batch, p.sync));
        lock.lock();
      }
    });
  }
  ~gated_writer() {
    set_open(true);
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void write(store::write_batch b, std::function<void(std::error_code)> done, bool sync) {
    {
      std::lock_guard lock(mu_);
      queued_.push_back({std::move(b), std::move(done), sync});
    }
    cv_.notify_all();
  }
  // Closed: the oldest queued batch, written, or failed as a failed fsync would (nothing written).
  void step(bool ok = true) {
    pending p;
    {
      std::lock_guard lock(mu_);
      ASSERT_FALSE(queued_.empty()) << "nothing queued in the writer";
      p = std::move(queued_.front());
      queued_.pop_front();
    }
    p.done(ok ? kv_->write(p.batch, p.sync) : std::make_error_code(std::errc::io_error));
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return queued_.size();
  }
  void set_open(bool open) {
    {
      std::lock_guard lock(mu_);
      open_ = open;
    }
    cv_.notify_all();
  }

 private:
  struct pending {
    store::write_batch batch;
    std::function<void(std::error_code)> done;
    bool sync = false;
  };
  std::shared_ptr<store::memory_kv> kv_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  bool stopping_ = false;
  std::deque<pending> queued_;
  std::thread thread_;
};

// A machine whose crash loses every write made without sync after the last synced one, as the
// kernel's page cache would: `durable` holds what a sync write made stable (itself and every
// batch before it), `live` what the process reads.
struct machine {
  std::mutex mu;
  std::shared_ptr<store::memory_kv> live = std::make_shared<store::memory_kv>();
  store::memory_kv durable;
  std::vector<store::write_batch> unsynced;

  void crash() {
    std::lock_guard lock(mu);
    unsynced.clear();
    live = std::make_shared<store::memory_kv>();
    std::vector<store::entry> all;
    ASSERT_FALSE(durable.scan("", "", 1u << 20, all));
    store::write_batch b;
    for (const auto& [k, v] : all) b.put(k, v);
    ASSERT_FALSE(live->write(b, true));
  }
};

class machine_kv : public store::kv {
 public:
  explicit machine_kv(std::shared_ptr<machine> m) : m_(std::move(m)) {}
  std::error_code get(std::string_view key, std::string& value) const override {
    std::lock_guard lock(m_->mu);
    return m_->live->get(key, value);
  }
  std::error_code write(const store::write_batch& b, bool sync) override {
    std::lock_guard lock(m_->mu);
    if (auto ec = m_->live->write(b, sync)) return ec;
    m_->unsynced.push_back(b);
    if (sync) {
      for (const auto& u : m_->unsynced) (void)m_->durable.write(u, true);
      m_->unsynced.clear();
    }
    return {};
  }
  std::error_code scan(std::string_view begin, std::string_view end, std::size_t limit,
                       std::vector<store::entry>& out) const override {
    std::lock_guard lock(m_->mu);
    return m_->live->scan(begin, end, limit, out);
  }

 private:
  std::shared_ptr<machine> m_;
};

struct fake_owner_state {
  std::mutex mu;
  std::map<std::string, std::string> data;
  int fail_puts = 0;
  int fail_gets = 0;
  int puts = 0;
};

class fake_owner : public owner_api {
 public:
  explicit fake_owner(std::shared_ptr<fake_owner_state> s) : s_(std::move(s)) {}
  std::error_code get(const std::string& key, bool& found, std::string& value, std::string& error) override {
    std::lock_guard lock(s_->mu);
    if (s_->fail_gets > 0) {
      --s_->fail_gets;
      error = "GET failed";
      return std::make_error_code(std::errc::io_error);
    }
    auto it = s_->data.find(key);
    found = it != s_->data.end();
    value = found ? it->second : "";
    return {};
  }
  std::error_code put(const std::string& key, const std::string& value, std::string& error) override {
    std::lock_guard lock(s_->mu);
    ++s_->puts;
    if (s_->fail_puts > 0) {
      --s_->fail_puts;
      error = "PUT answered 500";
      return std::make_error_code(std::errc::io_error);
    }
    s_->data[key] = value;
    return {};
  }
  std::error_code del(const std::string& key, std::string&) override {
    std::lock_guard lock(s_->mu);
    s_->data.erase(key);
    return {};
  }

 private:
  std::shared_ptr<fake_owner_state> s_;
};

// The owner's async calls held until the test lets each one go (the owner slow, or failing):
// what an owner's prepare or abort looks like between its asynchronous steps.
struct held_calls {
  struct call {
    std::string op;  // "get", "put", "del"
    std::string key, value;
    owner_api::callback done;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<call> calls;

  // The next call made, waiting for it (generously: the writer's thread makes the PUT).
  call next() {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(30), [this] { return !calls.empty(); })) {
      ADD_FAILURE() << "no owner call came";
      return {};
    }
    auto c = std::move(calls.front());
    calls.pop_front();
    return c;
  }
  std::size_t waiting() {
    std::lock_guard lock(mu);
    return calls.size();
  }
};

class held_owner : public fake_owner {
 public:
  held_owner(std::shared_ptr<fake_owner_state> s, std::shared_ptr<held_calls> h)
      : fake_owner(std::move(s)), h_(std::move(h)) {}
  void get_async(const std::string& key, callback done) override { hold("get", key, "", std::move(done)); }
  void put_async(const std::string& key, const std::string& value, callback done) override {
    hold("put", key, value, std::move(done));
  }
  void del_async(const std::string& key, callback done) override { hold("del", key, "", std::move(done)); }

 private:
  void hold(const char* op, const std::string& key, const std::string& value, callback done) {
    {
      std::lock_guard lock(h_->mu);
      h_->calls.push_back({op, key, value, std::move(done)});
    }
    h_->cv.notify_all();
  }
  std::shared_ptr<held_calls> h_;
};

struct fake_outcomes_state {
  std::mutex mu;
  std::string coordinator;                   // "" unreachable
  std::map<std::string, std::string> peers;  // url → answer
  std::atomic<int> asked{0};
};

class fake_outcomes : public outcome_api {
 public:
  explicit fake_outcomes(std::shared_ptr<fake_outcomes_state> s) : s_(std::move(s)) {}
  std::string ask_coordinator(const std::string&) override {
    std::lock_guard lock(s_->mu);
    ++s_->asked;
    return s_->coordinator;
  }
  std::string ask_peer(const std::string& url, const std::string&, const std::string&, std::uint64_t) override {
    std::lock_guard lock(s_->mu);
    return s_->peers[url];
  }

 private:
  std::shared_ptr<fake_outcomes_state> s_;
};

std::uint64_t wall_us(std::chrono::minutes ago = std::chrono::minutes(0)) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>((std::chrono::system_clock::now() - ago).time_since_epoch())
          .count());
}

config::product_schema products() {
  return {"products",
          "catalog",
          "id",
          {{"id", config::field_type::string},
           {"name", config::field_type::string},
           {"price", config::field_type::number},
           {"supplierEmail", config::field_type::string, true}}};
}

struct published {
  std::string key;
  std::optional<std::string> value;
  std::uint64_t version;
  std::size_t with = 0;  // writes of the participant's that came along
};

class participant_test : public ::testing::Test {
 protected:
  std::unique_ptr<participant> make(config::participant_role role, std::chrono::milliseconds lock_timeout = 10000ms) {
    config::participate_spec spec;
    spec.product = "products";
    spec.namespace_name = "catalog";
    spec.role = role;
    spec.coordinator_url = "http://gw:8080";
    spec.lock_timeout = lock_timeout;
    participant_options o;
    o.ask_backoff = std::chrono::milliseconds(0);
    if (retention_) o.retention = *retention_;
    o.records_in_outbox = records_in_outbox_;
    o.version_floor = version_floor_;
    o.background = background_;
    auto kv = machine_ ? std::unique_ptr<store::kv>(std::make_unique<machine_kv>(machine_))
                       : std::unique_ptr<store::kv>(std::make_unique<shared_kv>(kv_));
    store::group_writer* shared = nullptr;
    if (gate_) {
      o.writer = [g = gate_](store::write_batch b, std::function<void(std::error_code)> done, bool sync) {
        g->write(std::move(b), std::move(done), sync);
      };
    }
    if (shared_writer_) {
      // The publisher's writer, which the owner's records share (one queue for both).
      writer_stores_.push_back(machine_ ? std::unique_ptr<store::kv>(std::make_unique<machine_kv>(machine_))
                                        : std::unique_ptr<store::kv>(std::make_unique<shared_kv>(kv_)));
      writers_.push_back(std::make_unique<store::group_writer>(*writer_stores_.back()));
      shared = writers_.back().get();
      o.writer = [shared](store::write_batch b, std::function<void(std::error_code)> done, bool sync) {
        shared->write(std::move(b), std::move(done), sync);
      };
    }
    // The outbox's store is the participant's (records_in_outbox): `with` goes in with the
    // entry, synced, as the publisher's writer does it.
    store::kv* outbox = kv.get();
    auto p = std::make_unique<participant>(
        spec, products(),
        role == config::participant_role::copy ? std::vector<std::string>{"id", "name"} : std::vector<std::string>{},
        std::move(kv),
        held_ ? std::unique_ptr<owner_api>(std::make_unique<held_owner>(owner_, held_))
              : std::unique_ptr<owner_api>(std::make_unique<fake_owner>(owner_)),
        [this, outbox, shared](const std::string& key, const std::optional<std::string>& value, std::uint64_t version,
                               store::write_batch with, const publish_callback& done) {
          if (shared != nullptr && !fail_publish_.load()) {
            {
              std::lock_guard lock(mu_);
              published_.push_back({key, value, version, with.size()});
            }
            shared->write(std::move(with), [done](std::error_code ec) { done(ec, ec ? "outbox write failed" : ""); });
            return;
          }
          auto answer = [this, outbox, key, value, version, with = std::move(with), done] {
            bool fail = fail_publish_.load();
            if (!fail) {
              std::lock_guard lock(mu_);
              published_.push_back({key, value, version, with.size()});
              if (!with.empty()) {
                EXPECT_FALSE(outbox->write(with, true));
              }
            }
            if (fail) {
              done(std::make_error_code(std::errc::no_buffer_space), "outbox full");
            } else {
              done({}, "");
            }
          };
          if (!publish_on_thread_) {
            answer();
            return;
          }
          std::lock_guard lock(mu_);
          publish_threads_.emplace_back(std::move(answer));
        },
        std::make_unique<fake_outcomes>(outcomes_), o);
    std::string error;
    EXPECT_FALSE(p->start(error)) << error;
    return p;
  }

  static prepare_request put(const std::string& key, const std::string& value, std::uint64_t version) {
    return {"products", key, false, value, version, {"http://peer-a:8091", "http://peer-b:8091"}};
  }

  // Lets a held owner call go: done as the fake owner does it (ok), or failed.
  void let_go(held_calls::call& c, bool ok = true) {
    ASSERT_TRUE(c.done) << "no call to let go";
    if (!ok) {
      c.done(std::make_error_code(std::errc::timed_out), false, "", "the owner did not answer in time");
      return;
    }
    fake_owner real(owner_);
    if (c.op == "get") {
      real.owner_api::get_async(c.key, std::move(c.done));
    } else if (c.op == "put") {
      real.owner_api::put_async(c.key, c.value, std::move(c.done));
    } else {
      real.owner_api::del_async(c.key, std::move(c.done));
    }
  }

  // The coordinator answers "committed" for the owner's recovered `preparing` record of tx1
  // (key k, version 3): the new value reaches the owner, the key is free, the change published.
  void recover_as_committed(participant& p) {
    {
      std::lock_guard lock(outcomes_->mu);
      outcomes_->coordinator = "committed";
    }
    p.resolve_overdue();
    EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new"})");
    EXPECT_EQ(p.locked_keys(), 0u);
    ASSERT_EQ(published_.size(), 1u);
    EXPECT_EQ(published_[0].version, 3u);
  }

  std::string owner_value(const std::string& key) {
    std::lock_guard lock(owner_->mu);
    auto it = owner_->data.find(key);
    return it == owner_->data.end() ? "<absent>" : it->second;
  }

  std::string copy_value(const participant& p, const std::string& key, std::uint64_t* version = nullptr) {
    replica::item it;
    if (replica::lookup(p.store(), key, it)) return "<absent>";
    if (version != nullptr) *version = it.version;
    return it.value;
  }

  std::shared_ptr<store::memory_kv> kv_ = std::make_shared<store::memory_kv>();
  std::shared_ptr<machine> machine_;                    // set: make() uses a store that a test can crash
  std::optional<std::chrono::milliseconds> retention_;  // set: make() uses it
  std::shared_ptr<fake_owner_state> owner_ = std::make_shared<fake_owner_state>();
  std::shared_ptr<fake_outcomes_state> outcomes_ = std::make_shared<fake_outcomes_state>();
  std::shared_ptr<gated_writer> gate_;  // set: make() gives the participant this writer (on kv_)
  std::shared_ptr<held_calls> held_;    // set: make() gives the participant an owner whose async calls the test lets go
  std::mutex mu_;
  std::atomic<bool> fail_publish_{false};
  std::vector<published> published_;
  bool records_in_outbox_ = false;  // set: make() gives the participant the outbox's store
  bool background_ = true;          // false: make()'s participant runs no background thread
  std::function<std::uint64_t(const std::string&)> version_floor_;  // the outbox's, for an owner
  bool publish_on_thread_ = false;  // set: the fake publisher answers from a thread of its own
  std::vector<std::thread> publish_threads_;
  bool shared_writer_ = false;  // set: the records and the publishes go through one writer, as at an owner
  // The three ways the owner's publisher may answer (0, 1, 2); returns the way's name, for a trace.
  const char* set_publish_mode(int mode) {
    publish_on_thread_ = mode == 1;
    shared_writer_ = mode == 2;
    return mode == 0   ? "answered inside the call"
           : mode == 1 ? "answered from the publisher's thread"
                       : "the records through the publisher's writer";
  }
  std::vector<std::unique_ptr<store::kv>> writer_stores_;
  std::vector<std::unique_ptr<store::group_writer>> writers_;  // (outlive the participants)

  void TearDown() override {
    writers_.clear();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(publish_threads_);
    }
    for (auto& t : threads) t.join();
  }
};

TEST_F(participant_test, OwnerAppliesAtPrepareAndPublishesAtCommit) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  auto p = make(config::participant_role::owner);
  auto r = p->prepare("tx1", put("k", R"({"id":"k","name":"new","supplierEmail":"s@x"})", 77));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new","supplierEmail":"s@x"})");
  EXPECT_EQ(p->locked_keys(), 1u);
  EXPECT_TRUE(published_.empty());
  ASSERT_EQ(p->commit("tx1").status, 200u);
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_EQ(published_[0].key, "k");
  EXPECT_EQ(published_[0].version, 77u);
  EXPECT_EQ(p->locked_keys(), 0u);
  // Idempotent: the same answers again, nothing published twice.
  EXPECT_EQ(p->commit("tx1").status, 200u);
  EXPECT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 77)).status, 200u);
  EXPECT_EQ(p->abort("tx1").status, 409u);
  EXPECT_EQ(published_.size(), 1u);
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("committed"));
}

// The outbox never renumbers a transaction's version and refuses one below the key's last:
// the owner says so at prepare, while the transaction can still abort everywhere.
TEST_F(participant_test, AnOwnerVotesNoForAVersionBelowTheKeysPublishedOne) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  version_floor_ = [](const std::string& key) -> std::uint64_t { return key == "k" ? 100 : 0; };
  auto p = make(config::participant_role::owner);
  auto r = p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 99));
  EXPECT_EQ(r.status, 409u) << r.body;
  EXPECT_THAT(r.body, HasSubstr("below the version it was last published with (100)"));
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})") << "the owner was not written";
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 99)).status, 409u) << "the same answer";
  ASSERT_EQ(p->prepare("tx2", put("k", R"({"id":"k","name":"new"})", 101)).status, 200u);
  ASSERT_EQ(p->commit("tx2").status, 200u);
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_EQ(published_[0].version, 101u);
}

// A direct write of the owner's app (publisher::set_key_holder) that found the key free just
// before the prepare took it: its floor is in the store once the `preparing` record is written,
// and the owner checks again then, before applying anything.
TEST_F(participant_test, AnOwnerChecksTheFloorAgainOnceItsPreparingRecordIsWritten) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  std::atomic<int> asked{0};
  version_floor_ = [&asked](const std::string&) -> std::uint64_t { return asked.fetch_add(1) == 0 ? 0 : 100; };
  auto p = make(config::participant_role::owner);
  auto r = p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 99));
  EXPECT_EQ(r.status, 409u) << r.body;
  EXPECT_THAT(r.body, HasSubstr("a direct write of the owner came first"));
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})") << "the owner was not written";
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_EQ(p->holder_of("k"), "");
  EXPECT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 99)).status, 409u) << "the same answer";
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})");
}

// A no vote that wrote nothing (the owner's GET failed) is final all the same: a repeated
// prepare of that transaction votes no again instead of starting afresh (and voting yes).
TEST_F(participant_test, ARepeatedOwnerPrepareAfterANoVoteThatWroteNothingVotesNoAgain) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  owner_->fail_gets = 1;
  auto p = make(config::participant_role::owner);
  auto r = p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 7));
  EXPECT_EQ(r.status, 503u) << r.body;
  EXPECT_EQ(p->locked_keys(), 0u);
  auto again = p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 7));
  EXPECT_EQ(again.status, 409u) << again.body;
  EXPECT_THAT(again.body, HasSubstr("already aborted"));
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})") << "never applied";
  EXPECT_EQ(p->abort("tx1").status, 200u);
  EXPECT_EQ(p->commit("tx1").status, 409u);
  // The key was never held: another transaction takes it.
  ASSERT_EQ(p->prepare("tx2", put("k", R"({"id":"k","name":"next"})", 8)).status, 200u);
  ASSERT_EQ(p->commit("tx2").status, 200u);
  // And across a restart the abort is still there (its record rides in the next group).
  p.reset();
  auto q = make(config::participant_role::owner);
  EXPECT_EQ(q->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 7)).status, 409u);
}

TEST_F(participant_test, OwnerAbortPutsThePreviousValueBack) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  auto p = make(config::participant_role::owner);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 5)).status, 200u);
  ASSERT_EQ(p->abort("tx1").status, 200u);
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})");
  // A key the owner did not have is deleted again.
  ASSERT_EQ(p->prepare("tx2", put("fresh", R"({"id":"fresh"})", 6)).status, 200u);
  EXPECT_EQ(owner_value("fresh"), R"({"id":"fresh"})");
  ASSERT_EQ(p->abort("tx2").status, 200u);
  EXPECT_EQ(owner_value("fresh"), "<absent>");
  EXPECT_EQ(p->abort("tx2").status, 200u);
  EXPECT_EQ(p->commit("tx2").status, 409u);
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_TRUE(published_.empty());
}

TEST_F(participant_test, OwnerThatRefusesTheChangeGetsANoVoteAndIsRestored) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  owner_->fail_puts = 1;
  auto p = make(config::participant_role::owner);
  auto r = p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 5));
  EXPECT_EQ(r.status, 503u);
  EXPECT_THAT(r.body, HasSubstr("PUT answered 500"));
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})");
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("aborted"));
}

TEST_F(participant_test, AKeyIsHeldByOneTransactionAtATime) {
  auto p = make(config::participant_role::copy);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"a"})", 1)).status, 200u);
  auto r = p->prepare("tx2", put("k", R"({"id":"k","name":"b"})", 2));
  EXPECT_EQ(r.status, 409u);
  EXPECT_THAT(r.body, HasSubstr("held by transaction tx1"));
  EXPECT_EQ(p->prepare("tx3", put("other", R"({"id":"other"})", 3)).status, 200u);
  ASSERT_EQ(p->commit("tx1").status, 200u);
  EXPECT_EQ(p->prepare("tx2", put("k", R"({"id":"k","name":"b"})", 2)).status, 409u)
      << "tx2 voted no once: it stays no";
  EXPECT_EQ(p->prepare("tx4", put("k", R"({"id":"k","name":"c"})", 4)).status, 200u);
}

TEST_F(participant_test, CopyReadersNeverSeeAStagedValue) {
  auto p = make(config::participant_role::copy);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"a","price":3,"supplierEmail":"s@x"})", 10)).status, 200u);
  EXPECT_EQ(copy_value(*p, "k"), "<absent>");
  ASSERT_EQ(p->commit("tx1").status, 200u);
  std::uint64_t version = 0;
  EXPECT_EQ(copy_value(*p, "k", &version), R"({"id":"k","name":"a"})") << "projected to the policy's fields";
  EXPECT_EQ(version, 10u);
  ASSERT_EQ(p->prepare("tx2", put("k", R"({"id":"k","name":"b"})", 11)).status, 200u);
  EXPECT_EQ(copy_value(*p, "k"), R"({"id":"k","name":"a"})");
  ASSERT_EQ(p->abort("tx2").status, 200u);
  EXPECT_EQ(copy_value(*p, "k"), R"({"id":"k","name":"a"})");
  prepare_request del{"products", "k", true, "", 12, {}};
  ASSERT_EQ(p->prepare("tx3", del).status, 200u);
  ASSERT_EQ(p->commit("tx3").status, 200u);
  EXPECT_EQ(copy_value(*p, "k"), "<absent>");
}

// A copy's commit frees the key only once its value is in the copy's store: between the two, a
// read of the copy would serve the previous value as current (staleness 0, "nothing holds the
// key") though the transaction is committed elsewhere. Until 2026-12-04 the key was freed when
// the commit was handed to the writer. A failed write keeps the key held too.
TEST_F(participant_test, ACopyHoldsTheKeyUntilItsCommittedValueIsInTheStore) {
  gate_ = std::make_shared<gated_writer>(kv_);
  auto p = make(config::participant_role::copy);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"a"})", 1)).status, 200u);
  ASSERT_EQ(p->commit("tx1").status, 200u);
  ASSERT_EQ(p->prepare("tx2", put("k", R"({"id":"k","name":"b"})", 2)).status, 200u);
  gate_->set_open(false);
  // Open again however the test ends: the participant's stop() waits for its writer.
  std::shared_ptr<void> reopen(nullptr, [g = gate_](void*) { g->set_open(true); });
  std::vector<reply> answers;
  std::mutex answers_mu;
  auto commit = [&] {
    p->commit_async("tx2", [&](const reply& r) {
      std::lock_guard lock(answers_mu);
      answers.push_back(r);
    });
  };
  // What a reader of the copy sees at any moment: the new value, or the old one said held.
  auto never_old_as_current = [&](const char* when) {
    auto held = p->held_ms("k");
    auto value = copy_value(*p, "k");
    EXPECT_TRUE(value == R"({"id":"k","name":"b"})" || held > 0)
        << when << ": " << value << " served with staleness " << held;
  };
  commit();
  ASSERT_EQ(gate_->size(), 1u) << "the commit's record and value wait in the writer";
  never_old_as_current("commit queued");
  EXPECT_EQ(p->holder_of("k"), "tx2");
  gate_->step(false);  // the group's write fails: nothing written
  {
    std::lock_guard lock(answers_mu);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(answers[0].status, 503u) << answers[0].body;
  }
  never_old_as_current("commit failed");
  EXPECT_EQ(p->holder_of("k"), "tx2") << "a failed commit keeps the key";
  commit();  // the coordinator's retry
  ASSERT_EQ(gate_->size(), 1u);
  never_old_as_current("retried commit queued");
  gate_->step();
  {
    std::lock_guard lock(answers_mu);
    ASSERT_EQ(answers.size(), 2u);
    EXPECT_EQ(answers[1].status, 200u) << answers[1].body;
  }
  EXPECT_EQ(copy_value(*p, "k"), R"({"id":"k","name":"b"})");
  EXPECT_EQ(p->held_ms("k"), 0) << "committed and in the store: current";
  EXPECT_EQ(p->locked_keys(), 0u);
}

TEST_F(participant_test, BadChangesAreRefusedAndLockNothing) {
  auto p = make(config::participant_role::copy);
  EXPECT_EQ(p->prepare("tx1", put("k", R"({"id":"k","ratng":5})", 1)).status, 400u);
  EXPECT_EQ(p->prepare("tx2", put("k", R"({"id":"k","price":"cheap"})", 1)).status, 400u);
  auto other = put("k", R"({"id":"k"})", 1);
  other.product = "orders";
  EXPECT_EQ(p->prepare("tx3", other).status, 400u);
  EXPECT_EQ(p->locked_keys(), 0u);
}

TEST_F(participant_test, AnAbortBeforeThePrepareMakesItVoteNo) {
  auto p = make(config::participant_role::copy);
  ASSERT_EQ(p->abort("late").status, 200u);
  EXPECT_EQ(p->prepare("late", put("k", R"({"id":"k"})", 1)).status, 409u);
  // Asking about a transaction never prepared aborts it here too (cooperative termination).
  EXPECT_THAT(p->query("never", wall_us()).body, HasSubstr("aborted"));
  EXPECT_EQ(p->prepare("never", put("k", R"({"id":"k"})", 1)).status, 409u);
  EXPECT_EQ(p->locked_keys(), 0u);
}

TEST_F(participant_test, PreparedStateSurvivesARestart) {
  {
    auto p = make(config::participant_role::copy);
    ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"a"})", 10)).status, 200u);
  }
  auto p = make(config::participant_role::copy);
  EXPECT_EQ(p->locked_keys(), 1u);
  EXPECT_EQ(p->prepare("tx2", put("k", R"({"id":"k"})", 11)).status, 409u);
  ASSERT_EQ(p->commit("tx1").status, 200u);
  EXPECT_EQ(copy_value(*p, "k"), R"({"id":"k","name":"a"})");
}

// What a restart finds when the machine went down between the owner's PUT and the yes vote, or
// after the yes vote (the `prepared` record is not fsync'd): `preparing`, with both values.
tx_record preparing_record() {
  tx_record r;
  r.state = tx_state::preparing;
  r.key = "k";
  r.version = 3;
  r.value = R"({"id":"k","name":"new"})";
  r.had_previous = true;
  r.previous = R"({"id":"k","name":"old"})";
  return r;
}

TEST_F(participant_test, AHalfPreparedOwnerChangeAsksAndIsCompensatedWhenAborted) {
  owner_->data["k"] = R"({"id":"k","name":"new"})";
  store::write_batch b;
  b.put("ttx1", encode_record(preparing_record()));
  ASSERT_FALSE(kv_->write(b, true));
  auto p = make(config::participant_role::owner);
  // It may have voted yes: nobody to ask yet, so it holds the key and changes nothing.
  p->resolve_overdue();
  EXPECT_EQ(p->locked_keys(), 1u);
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new"})");
  EXPECT_GE(outcomes_->asked.load(), 1);
  {
    std::lock_guard lock(outcomes_->mu);
    outcomes_->coordinator = "aborted";
  }
  p->resolve_overdue();
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})");
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("aborted"));
  EXPECT_TRUE(published_.empty());
}

TEST_F(participant_test, AHalfPreparedOwnerChangeThatWasCommittedIsAppliedAgain) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";  // the PUT did not reach the owner, or was lost there
  store::write_batch b;
  b.put("ttx1", encode_record(preparing_record()));
  ASSERT_FALSE(kv_->write(b, true));
  auto p = make(config::participant_role::owner);
  recover_as_committed(*p);
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("committed"));
}

// A `preparing` record as the releases before 2026-12-03 18:40 wrote it (JSON), found at start:
// read as it was, recovered as any other, and rewritten in the binary format by its next change.
TEST_F(participant_test, AJsonRecordOfAnEarlierReleaseIsRecovered) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  store::write_batch b;
  b.put("ttx1", R"({"deleted":false,"hadPrevious":true,"key":"k","peers":["http://copy:8091"],)"
                R"("previous":"{\"id\":\"k\",\"name\":\"old\"}","since":1764720000000000,"state":"preparing",)"
                R"("value":"{\"id\":\"k\",\"name\":\"new\"}","version":3})");
  ASSERT_FALSE(kv_->write(b, true));
  auto p = make(config::participant_role::owner);
  EXPECT_EQ(p->locked_keys(), 1u);
  recover_as_committed(*p);
  std::string v;
  ASSERT_EQ(kv_->get("ttx1", v), std::error_code());
  ASSERT_FALSE(v.empty());
  EXPECT_EQ(v[0], '\x01') << "rewritten in the binary format";
  ASSERT_TRUE(decode_record(v));
  EXPECT_EQ(decode_record(v)->state, tx_state::committed);
}

TEST_F(participant_test, AnOwnerThatVotedNoAndCouldNotCompensateKeepsCompensatingWithoutAsking) {
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  owner_->fail_puts = 2;  // the change, then the compensation
  auto p = make(config::participant_role::owner);
  auto r = p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 5));
  EXPECT_EQ(r.status, 503u);
  EXPECT_THAT(r.body, HasSubstr("compensation pending"));
  // (The background thread may compensate from here on, at its next tick.)
  EXPECT_EQ(p->commit("tx1").status, 409u) << "a no vote is never committed";
  p->resolve_overdue();  // the coordinator cannot be reached (""): it compensates on its own
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})");
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("aborted"));
}

TEST_F(participant_test, AnOverdueTransactionAsksTheCoordinator) {
  auto p = make(config::participant_role::copy, 100ms);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"a"})", 10)).status, 200u);
  {  // the background thread asks meanwhile
    std::lock_guard lock(outcomes_->mu);
    outcomes_->coordinator = "committed";
  }
  p->resolve_overdue();
  EXPECT_EQ(outcomes_->asked.load(), 0) << "not overdue yet";
  std::this_thread::sleep_for(150ms);
  p->resolve_overdue();
  EXPECT_EQ(outcomes_->asked.load(), 1);
  EXPECT_EQ(copy_value(*p, "k"), R"({"id":"k","name":"a"})");
  EXPECT_EQ(p->locked_keys(), 0u);
}

TEST_F(participant_test, WithoutTheCoordinatorAPeerThatKnowsDecides) {
  auto p = make(config::participant_role::copy, 100ms);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"a"})", 10)).status, 200u);
  std::this_thread::sleep_for(150ms);
  {  // the background thread asks meanwhile
    std::lock_guard lock(outcomes_->mu);
    outcomes_->coordinator = "";  // unreachable
  }
  {  // the background thread asks meanwhile
    std::lock_guard lock(outcomes_->mu);
    outcomes_->peers["http://peer-a:8091"] = "prepared";
  }
  p->resolve_overdue();
  EXPECT_EQ(p->locked_keys(), 1u) << "nobody knows yet: the key stays locked";
  {  // the background thread asks meanwhile
    std::lock_guard lock(outcomes_->mu);
    outcomes_->peers["http://peer-b:8091"] = "aborted";
  }
  p->resolve_overdue();
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_EQ(copy_value(*p, "k"), "<absent>");
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("aborted"));
}

TEST_F(participant_test, AFailedPublishLeavesTheCommitToBeRetried) {
  auto p = make(config::participant_role::owner);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 10)).status, 200u);
  fail_publish_ = true;
  EXPECT_EQ(p->commit("tx1").status, 503u);
  EXPECT_EQ(p->locked_keys(), 1u);
  fail_publish_ = false;
  EXPECT_EQ(p->commit("tx1").status, 200u);
  EXPECT_EQ(published_.size(), 1u);
}

TEST_F(participant_test, FinishedRecordsAreDroppedAfterRetention) {
  config::participate_spec spec;
  spec.product = "products";
  spec.role = config::participant_role::copy;
  participant_options o;
  o.retention = 0ms;
  auto kv = std::make_unique<store::memory_kv>();
  auto* raw = kv.get();
  participant p(spec, products(), {"id"}, std::move(kv), nullptr, nullptr, std::make_unique<fake_outcomes>(outcomes_),
                o);
  ASSERT_EQ(p.prepare("tx1", put("k", R"({"id":"k"})", 1)).status, 200u);
  ASSERT_EQ(p.commit("tx1").status, 200u);
  std::this_thread::sleep_for(2ms);
  p.resolve_overdue();
  std::string v;
  EXPECT_EQ(raw->get("ttx1", v), store::errc::not_found);
  EXPECT_EQ(raw->get(replica::data_key("k"), v), std::error_code()) << "the copy itself stays";
  std::vector<store::entry> index;
  ASSERT_FALSE(raw->scan("g", "h", 10, index));
  EXPECT_TRUE(index.empty()) << "the time index goes with the record";
}

TEST_F(participant_test, FinishedRecordsStayWithinRetention) {
  auto p = make(config::participant_role::copy);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 1)).status, 200u);
  ASSERT_EQ(p->commit("tx1").status, 200u);
  p->resolve_overdue();
  std::string v;
  EXPECT_EQ(kv_->get("ttx1", v), std::error_code());
  EXPECT_EQ(p->commit("tx1").status, 200u);
}

// The coordinator forgets a transaction once every participant has acknowledged its commit, and
// answers "aborted" for one it does not know (presumed abort). So an acknowledged commit must
// survive a crash of the machine: were its `committed` record lost, the participant would restart
// `prepared`, ask, and be told "aborted" (a copy would drop the committed value; an owner would
// put the previous value back). Until 2026-12-03 the record was written without fsync.
TEST_F(participant_test, AnAcknowledgedCommitSurvivesACrashOfTheMachine) {
  for (auto role : {config::participant_role::copy, config::participant_role::owner}) {
    SCOPED_TRACE(role == config::participant_role::copy ? "copy" : "owner");
    machine_ = std::make_shared<machine>();
    owner_->data["k"] = R"({"id":"k","name":"old"})";
    {
      auto p = make(role);
      ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 10)).status, 200u);
      auto r = p->commit("tx1");
      ASSERT_EQ(r.status, 200u) << r.body;
    }
    machine_->crash();
    outcomes_->coordinator = "aborted";  // what a coordinator that forgot it answers
    auto p = make(role);
    EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("committed"));
    // (The owner's record may have lost its unsynced `published` mark: then it publishes the
    // value once more, same version, and holds the key until then.)
    p->resolve_overdue();
    EXPECT_EQ(p->locked_keys(), 0u);
    EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("committed"));
    if (role == config::participant_role::copy) {
      EXPECT_EQ(copy_value(*p, "k"), R"({"id":"k","name":"new"})");
    } else {
      EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new"})") << "a committed change was compensated";
    }
    outcomes_->coordinator = "";
  }
}

// The commit's record goes through the group writer: its acknowledgement comes from the group's
// callback, after the sync write that holds it.
TEST_F(participant_test, ACommitIsAcknowledgedAfterItsRecordIsSynced) {
  auto p = make(config::participant_role::copy);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 1)).status, 200u);
  auto synced_before = kv_->synced_writes();
  std::promise<std::uint64_t> answered;
  p->commit_async("tx1", [&](const reply& r) {
    EXPECT_EQ(r.status, 200u) << r.body;
    answered.set_value(kv_->synced_writes());
  });
  EXPECT_GT(answered.get_future().get(), synced_before);
  std::string v;
  EXPECT_EQ(kv_->get("ttx1", v), std::error_code());
  ASSERT_TRUE(decode_record(v));
  EXPECT_EQ(decode_record(v)->state, tx_state::committed);
  // A repeated commit: acknowledged behind a sync too (the first one's record may still have
  // been queued).
  synced_before = kv_->synced_writes();
  std::promise<std::uint64_t> again;
  p->commit_async("tx1", [&](const reply& r) {
    EXPECT_EQ(r.status, 200u) << r.body;
    again.set_value(kv_->synced_writes());
  });
  EXPECT_GT(again.get_future().get(), synced_before);
}

// A peer asked about a transaction it holds no record of aborts it on the spot only while no
// record of it can have been dropped yet: once finished records are dropped (retention), "no
// record" may mean "committed here long ago", and an "aborted" would make the asking peer undo a
// committed transaction (it asks peers when the coordinator is away). Until 2026-12-03 every
// unknown transaction was answered aborted.
TEST_F(participant_test, APeerThatMayHaveDroppedTheRecordAnswersUnknown) {
  {
    auto p = make(config::participant_role::copy);  // retention 5 minutes
    EXPECT_THAT(p->query("recent", wall_us()).body, HasSubstr("aborted"));
    EXPECT_EQ(p->prepare("recent", put("k", R"({"id":"k"})", wall_us())).status, 409u) << "a no vote is final";
    EXPECT_THAT(p->query("old", wall_us(std::chrono::minutes(4))).body, HasSubstr("unknown"));
    EXPECT_THAT(p->query("noversion", 0).body, HasSubstr("unknown"));
    EXPECT_EQ(p->prepare("old", put("k", R"({"id":"k"})", 7)).status, 200u) << "unknown records nothing";
  }
  // Committed here, then the record dropped: a late question is not answered aborted.
  config::participate_spec spec;
  spec.product = "products";
  spec.role = config::participant_role::copy;
  participant_options o;
  o.retention = 0ms;
  participant p(spec, products(), {"id"}, std::make_unique<store::memory_kv>(), nullptr, nullptr,
                std::make_unique<fake_outcomes>(outcomes_), o);
  auto version = wall_us(std::chrono::minutes(6));
  ASSERT_EQ(p.prepare("tx1", put("k2", R"({"id":"k2"})", version)).status, 200u);
  ASSERT_EQ(p.commit("tx1").status, 200u);
  std::this_thread::sleep_for(2ms);
  p.resolve_overdue();
  auto r = p.query("tx1", version);
  EXPECT_EQ(r.status, 200u);
  EXPECT_THAT(r.body, HasSubstr("unknown"));
}

// The owner's commit writes its `committed` record while the publisher writes the outbox (one
// fsync's wait instead of two in a row). A record on disk whose publish was refused (or lost
// with a crash) says so, keeps the key, and is published again: at the retried commit, or by the
// background thread after a restart.
TEST_F(participant_test, AnOwnerCommitWhosePublishFailedIsPublishedAgainAfterARestart) {
  machine_ = std::make_shared<machine>();
  {
    auto p = make(config::participant_role::owner);
    ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 9)).status, 200u);
    fail_publish_ = true;
    EXPECT_EQ(p->commit("tx1").status, 503u);
    EXPECT_EQ(p->locked_keys(), 1u);
  }
  machine_->crash();
  fail_publish_ = false;
  outcomes_->coordinator = "aborted";              // never asked: the record says committed
  auto p = make(config::participant_role::owner);  // its background thread may publish first
  p->resolve_overdue();
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_EQ(published_[0].version, 9u);
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("committed"));
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new"})");
  EXPECT_EQ(outcomes_->asked.load(), 0);
  EXPECT_EQ(p->commit("tx1").status, 200u);
  EXPECT_EQ(published_.size(), 1u);
  outcomes_->coordinator = "";
}

// A committed owner record whose publish keeps failing is not dropped with the finished ones:
// its event would never be published (and its key stay held in memory).
TEST_F(participant_test, AnUnpublishedCommitOutlivesRetentionUntilItIsPublished) {
  retention_ = 0ms;
  auto p = make(config::participant_role::owner);
  ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 4)).status, 200u);
  fail_publish_ = true;
  EXPECT_EQ(p->commit("tx1").status, 503u);
  std::this_thread::sleep_for(2ms);
  p->resolve_overdue();
  std::string v;
  ASSERT_EQ(kv_->get("ttx1", v), std::error_code()) << "dropped before it was published";
  ASSERT_TRUE(decode_record(v));
  EXPECT_EQ(decode_record(v)->state, tx_state::committed);
  fail_publish_ = false;
  p->resolve_overdue();  // publishes it (the background thread may have done so already)
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_EQ(p->commit("tx1").status, 200u);
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(published_.size(), 1u);
  }
  std::this_thread::sleep_for(2ms);
  p->resolve_overdue();
  EXPECT_EQ(kv_->get("ttx1", v), store::errc::not_found) << "published, it goes like any finished record";
}

// A commit published long after it was decided (a sidecar down longer than the retention, a
// store of an earlier release) is kept for the retention from its publish: the coordinator's
// repeated commit or a peer's question still finds it committed.
TEST_F(participant_test, ACommitPublishedLateIsKeptForTheRetentionFromItsPublish) {
  {
    auto p = make(config::participant_role::owner);
    ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 4)).status, 200u);
    fail_publish_ = true;
    EXPECT_EQ(p->commit("tx1").status, 503u);
  }
  fail_publish_ = false;
  std::string v;
  ASSERT_EQ(kv_->get("ttx1", v), std::error_code());
  auto r = decode_record(v);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->state, tx_state::committed);
  r->since_us = 12;  // committed at the start of the epoch: far past the retention
  store::write_batch b;
  b.put("ttx1", encode_record(*r));
  ASSERT_FALSE(kv_->write(b, true));
  background_ = false;
  auto p = make(config::participant_role::owner);
  p->resolve_overdue();  // published
  {
    std::lock_guard lock(mu_);
    ASSERT_EQ(published_.size(), 1u);
  }
  p->resolve_overdue();  // drops what is past the retention
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("committed"));
  EXPECT_EQ(p->commit("tx1").status, 200u);
}

tx_record full_record() {
  tx_record r;
  r.state = tx_state::committed;
  r.key = std::string("k\0ey", 4);
  r.deleted = false;
  r.version = 0x0102030405060708ULL;
  r.value = R"({"id":"k","name":"n\u00e9"})";
  r.had_previous = true;
  r.previous = std::string("\xff\x00prev", 6);
  r.peers = {"http://a:8091", "", "http://b:8091"};
  r.since_us = -5;
  r.published = false;
  return r;
}

void expect_same(const tx_record& a, const tx_record& b) {
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.deleted, b.deleted);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.value, b.value);
  EXPECT_EQ(a.had_previous, b.had_previous);
  EXPECT_EQ(a.previous, b.previous);
  EXPECT_EQ(a.peers, b.peers);
  EXPECT_EQ(a.since_us, b.since_us);
  EXPECT_EQ(a.published, b.published);
}

TEST(RecordTest, EveryFieldRoundTrips) {
  for (auto state : {tx_state::preparing, tx_state::prepared, tx_state::committed, tx_state::aborted}) {
    for (bool flag : {false, true}) {
      auto r = full_record();
      r.state = state;
      r.deleted = flag;
      r.had_previous = !flag;
      r.published = flag;
      if (flag) r.peers.clear();
      auto bytes = encode_record(r);
      ASSERT_EQ(static_cast<unsigned char>(bytes[0]), 1u) << "format 1";
      auto back = decode_record(bytes);
      ASSERT_TRUE(back) << to_string(state);
      expect_same(*back, r);
    }
  }
  tx_record empty;  // every string empty, no peers
  auto back = decode_record(encode_record(empty));
  ASSERT_TRUE(back);
  expect_same(*back, empty);
}

// What the releases before 2026-12-03 18:40 wrote: JSON, "published" only when false.
TEST(RecordTest, TheJsonRecordsOfEarlierReleasesAreRead) {
  auto r = decode_record(R"({"deleted":true,"hadPrevious":false,"key":"k","peers":["http://a:8091"],"previous":"",)"
                         R"("published":false,"since":12,"state":"committed","value":"","version":7})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, tx_state::committed);
  EXPECT_EQ(r->key, "k");
  EXPECT_TRUE(r->deleted);
  EXPECT_FALSE(r->had_previous);
  EXPECT_EQ(r->version, 7u);
  EXPECT_EQ(r->since_us, 12);
  EXPECT_EQ(r->peers, std::vector<std::string>{"http://a:8091"});
  EXPECT_FALSE(r->published);
  auto p = decode_record(R"({"deleted":false,"hadPrevious":true,"key":"k","peers":[],"previous":"{\"a\":1}",)"
                         R"("since":1,"state":"prepared","value":"{\"a\":2}","version":3})");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->state, tx_state::prepared);
  EXPECT_EQ(p->previous, R"({"a":1})");
  EXPECT_EQ(p->value, R"({"a":2})");
  EXPECT_TRUE(p->published) << "absent: published";
  EXPECT_FALSE(decode_record(R"({"state":"unknown","key":"k"})"));
}

TEST(RecordTest, WhatIsNotARecordIsRefused) {
  auto bytes = encode_record(full_record());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_record(std::string_view(bytes).substr(0, n))) << "cut at " << n;
  }
  EXPECT_FALSE(decode_record(bytes + "x")) << "trailing bytes";
  auto other = bytes;
  other[0] = '\x02';
  EXPECT_FALSE(decode_record(other)) << "a format this release does not know";
  other = bytes;
  other[1] = '\x04';
  EXPECT_FALSE(decode_record(other)) << "unknown state";
  other = bytes;
  other[2] = '\x08';
  EXPECT_FALSE(decode_record(other)) << "unknown flag";
  EXPECT_FALSE(decode_record("not a record"));
}

}  // namespace
}  // namespace datashare::sidecar::participant

namespace datashare::sidecar::participant {
namespace {

http::response ask(const service& s, boost::beast::http::verb method, const std::string& target, std::string body) {
  http::request req{method, target, 11};
  req.body() = std::move(body);
  req.prepare_payload();
  std::promise<http::response> p;
  s.handle(req, http::responder([&p](http::response r) { p.set_value(std::move(r)); }));
  return p.get_future().get();
}

// POST /v1/batch: every message does what its single call does, answered in order in one reply.
// Answers collected from async calls, waited for with a generous deadline.
struct answers {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<reply> got;
  std::function<void(reply)> add() {
    return [this](reply r) {
      std::lock_guard lock(mu);
      got.push_back(std::move(r));
      cv.notify_all();
    };
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return got.size() >= n; });
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return got.size();
  }
};

TEST_F(participant_test, ARepeatedPrepareWhileTheFirstIsInFlightGetsTheSameAnswer) {
  held_ = std::make_shared<held_calls>();
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  auto p = make(config::participant_role::owner);
  answers first, again, commit;
  p->prepare_async("tx1", put("k", R"({"id":"k","name":"new"})", 5), first.add());
  auto get = held_->next();
  ASSERT_EQ(get.op, "get");
  // The same prepare again, and the commit, while the first is between its steps: they wait.
  p->prepare_async("tx1", put("k", R"({"id":"k","name":"new"})", 5), again.add());
  p->commit_async("tx1", commit.add());
  EXPECT_EQ(again.size(), 0u);
  EXPECT_EQ(commit.size(), 0u);
  let_go(get);
  auto change = held_->next();  // after the `preparing` record's fsync, from the writer's thread
  ASSERT_EQ(change.op, "put");
  EXPECT_EQ(again.size(), 0u);
  let_go(change);
  ASSERT_TRUE(first.wait_for(1));
  ASSERT_TRUE(again.wait_for(1));
  ASSERT_TRUE(commit.wait_for(1));
  EXPECT_EQ(first.got[0].status, 200u) << first.got[0].body;
  EXPECT_EQ(again.got[0].status, 200u) << again.got[0].body;
  EXPECT_THAT(again.got[0].body, HasSubstr("yes"));
  EXPECT_EQ(commit.got[0].status, 200u) << commit.got[0].body;
  EXPECT_EQ(held_->waiting(), 0u) << "the owner was changed once";
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new"})");
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_EQ(p->locked_keys(), 0u);
}

TEST_F(participant_test, AnOwnerThatDoesNotAnswerTheGetGetsANoVoteAndNothingIsLocked) {
  held_ = std::make_shared<held_calls>();
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  auto p = make(config::participant_role::owner);
  answers first, again;
  p->prepare_async("tx1", put("k", R"({"id":"k","name":"new"})", 5), first.add());
  auto get = held_->next();
  p->prepare_async("tx1", put("k", R"({"id":"k","name":"new"})", 5), again.add());
  let_go(get, false);
  ASSERT_TRUE(first.wait_for(1));
  EXPECT_EQ(first.got[0].status, 503u);
  EXPECT_THAT(first.got[0].body, HasSubstr("reading the owner's current value"));
  // The repeated prepare ran after it and found the no vote recorded as an abort: no again,
  // without asking the owner (until 2026-12-04 nothing was recorded, and it started afresh).
  ASSERT_TRUE(again.wait_for(1));
  EXPECT_EQ(again.got[0].status, 409u) << again.got[0].body;
  EXPECT_THAT(again.got[0].body, HasSubstr("already aborted"));
  EXPECT_EQ(held_->waiting(), 0u) << "the owner was not asked again";
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})");
  EXPECT_EQ(p->abort("tx1").status, 200u);
}

TEST_F(participant_test, AnOwnerThatFailsThePutDuringAnAsyncPrepareIsCompensatedAndVotesNo) {
  held_ = std::make_shared<held_calls>();
  owner_->data["k"] = R"({"id":"k","name":"old"})";
  auto p = make(config::participant_role::owner);
  answers first, abort;
  p->prepare_async("tx1", put("k", R"({"id":"k","name":"new"})", 5), first.add());
  auto get = held_->next();
  let_go(get);
  auto change = held_->next();
  ASSERT_EQ(change.op, "put");
  // The coordinator gives up meanwhile (its timeout) and aborts: the abort waits for the prepare.
  p->abort_async("tx1", abort.add());
  {
    // The owner applied the change, but its answer is lost (a timeout).
    std::lock_guard lock(owner_->mu);
    owner_->data["k"] = change.value;
  }
  let_go(change, false);
  auto back = held_->next();  // the compensation: the previous value put back
  ASSERT_EQ(back.op, "put");
  EXPECT_EQ(back.value, R"({"id":"k","name":"old"})");
  EXPECT_EQ(first.size(), 0u) << "no vote before the compensation is done";
  let_go(back);
  ASSERT_TRUE(first.wait_for(1));
  EXPECT_EQ(first.got[0].status, 503u);
  EXPECT_THAT(first.got[0].body, HasSubstr("the owner refused the change"));
  ASSERT_TRUE(abort.wait_for(1));
  EXPECT_EQ(abort.got[0].status, 200u) << abort.got[0].body;
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"old"})");
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("aborted"));
  EXPECT_EQ(p->commit("tx1").status, 409u);
  EXPECT_EQ(held_->waiting(), 0u);
}

TEST_F(participant_test, AnAbortWhileTheOwnerPrepareIsInFlightCompensatesAfterItsYes) {
  held_ = std::make_shared<held_calls>();
  auto p = make(config::participant_role::owner);  // "k" absent at the owner
  answers first, abort, query;
  p->prepare_async("tx1", put("k", R"({"id":"k","name":"new"})", 5), first.add());
  auto get = held_->next();
  p->abort_async("tx1", abort.add());
  std::thread asker([&] { query.add()(p->query("tx1", wall_us())); });
  let_go(get);
  auto change = held_->next();
  let_go(change);
  ASSERT_TRUE(first.wait_for(1));
  EXPECT_EQ(first.got[0].status, 200u) << first.got[0].body;
  auto back = held_->next();  // the abort, behind it: the key the owner did not have is deleted
  ASSERT_EQ(back.op, "del");
  EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new"})");
  let_go(back);
  ASSERT_TRUE(abort.wait_for(1));
  EXPECT_EQ(abort.got[0].status, 200u) << abort.got[0].body;
  asker.join();
  ASSERT_EQ(query.size(), 1u);
  EXPECT_EQ(query.got[0].status, 200u);
  EXPECT_THAT(query.got[0].body, ::testing::AnyOf(HasSubstr("prepared"), HasSubstr("aborted")))
      << "asked while the prepare was in flight: answered after it, never \"no record\"";
  EXPECT_EQ(owner_value("k"), "<absent>");
  EXPECT_EQ(p->locked_keys(), 0u);
  EXPECT_EQ(p->commit("tx1").status, 409u);
}

TEST_F(participant_test, ABatchAnswersEachMessageAsItsSingleCallWould) {
  owner_->data["o"] = R"({"id":"o","name":"old"})";
  auto copy = make(config::participant_role::copy);
  thread_pool pool(2);
  service s({copy.get()}, pool);
  using bhttp_verb = boost::beast::http::verb;
  // One prepared alone first: the batch then holds a conflict with it.
  ASSERT_EQ(ask(s, bhttp_verb::post, "/v1/tx/t0/prepare", encode_prepare(put("held", R"({"id":"held"})", 5))).status,
            200u);
  std::string body;
  append_batch_message(body, "prepare", "t1", encode_prepare(put("a", R"({"id":"a","name":"x"})", 10)));
  append_batch_message(body, "prepare", "t2", encode_prepare(put("b", R"({"id":"b","name":"y"})", 11)));
  append_batch_message(body, "prepare", "t3", encode_prepare(put("held", R"({"id":"held"})", 12)));
  append_batch_message(body, "commit", "t0", encode_product("products"));
  append_batch_message(body, "prepare", "t4", "not json");
  append_batch_message(body, "abort", "t9", encode_product("other"));
  auto r = ask(s, bhttp_verb::post, "/v1/batch", body);
  ASSERT_EQ(r.status, 200u) << r.body;
  std::vector<batch_answer> answers;
  ASSERT_EQ(decode_batch_answers(r.body, answers), "");
  ASSERT_EQ(answers.size(), 6u);
  EXPECT_EQ(answers[0].status, 200u) << answers[0].body;
  EXPECT_EQ(answers[1].status, 200u) << answers[1].body;
  EXPECT_EQ(answers[2].status, 409u) << answers[2].body;  // t0 held the key when t3 asked
  EXPECT_EQ(answers[3].status, 200u) << answers[3].body;
  EXPECT_THAT(answers[3].body, HasSubstr("committed"));
  EXPECT_EQ(answers[4].status, 400u);
  EXPECT_EQ(answers[5].status, 400u);
  EXPECT_EQ(copy_value(*copy, "held"), R"({"id":"held"})");
  EXPECT_EQ(copy_value(*copy, "a"), "<absent>");  // prepared, not committed
  // The next batch commits one and aborts the other; repeated messages answer the same again.
  body.clear();
  append_batch_message(body, "commit", "t1", encode_product("products"));
  append_batch_message(body, "abort", "t2", encode_product("products"));
  append_batch_message(body, "commit", "t1", encode_product("products"));
  r = ask(s, bhttp_verb::post, "/v1/batch", body);
  ASSERT_EQ(r.status, 200u) << r.body;
  ASSERT_EQ(decode_batch_answers(r.body, answers), "");
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[0].status, 200u);
  EXPECT_EQ(answers[1].status, 200u);
  EXPECT_EQ(answers[2].status, 200u);
  EXPECT_EQ(copy_value(*copy, "a"), R"({"id":"a","name":"x"})");
  EXPECT_EQ(copy_value(*copy, "b"), "<absent>");
  EXPECT_EQ(copy->locked_keys(), 0u);
  // Broken framing: 400, nothing done; GET is not a batch.
  EXPECT_EQ(ask(s, bhttp_verb::post, "/v1/batch", "prepare t5 999\n{}\n").status, 400u);
  EXPECT_EQ(ask(s, bhttp_verb::get, "/v1/batch", "").status, 405u);
  EXPECT_EQ(copy->locked_keys(), 0u);
}

TEST_F(participant_test, AnOwnersBatchOfCommitsRunsAsOneTaskAndAnswersEachMessage) {
  owner_->data["a"] = R"({"id":"a","name":"old"})";
  auto owner = make(config::participant_role::owner);
  thread_pool pool(2);
  service s({owner.get()}, pool);
  using bhttp_verb = boost::beast::http::verb;
  std::string body;
  for (const char* k : {"a", "b", "c"})
    append_batch_message(body, "prepare", std::string("t") + k,
                         encode_prepare(put(k, std::string(R"({"id":")") + k + R"(","name":"new"})", 20)));
  auto r = ask(s, bhttp_verb::post, "/v1/batch", body);
  ASSERT_EQ(r.status, 200u) << r.body;
  std::vector<batch_answer> answers;
  ASSERT_EQ(decode_batch_answers(r.body, answers), "");
  ASSERT_EQ(answers.size(), 3u);
  for (const auto& a : answers) EXPECT_EQ(a.status, 200u) << a.body;
  EXPECT_EQ(owner_value("a"), R"({"id":"a","name":"new"})");
  body.clear();
  append_batch_message(body, "commit", "ta", encode_product("products"));
  append_batch_message(body, "commit", "tb", encode_product("products"));
  append_batch_message(body, "abort", "tc", encode_product("products"));
  append_batch_message(body, "commit", "ta", encode_product("products"));
  r = ask(s, bhttp_verb::post, "/v1/batch", body);
  ASSERT_EQ(r.status, 200u) << r.body;
  ASSERT_EQ(decode_batch_answers(r.body, answers), "");
  ASSERT_EQ(answers.size(), 4u);
  for (const auto& a : answers) EXPECT_EQ(a.status, 200u) << a.body;
  EXPECT_THAT(answers[0].body, HasSubstr("committed"));
  EXPECT_THAT(answers[2].body, HasSubstr("aborted"));
  EXPECT_THAT(answers[3].body, HasSubstr("committed"));
  EXPECT_EQ(owner_value("c"), "<absent>") << "compensated: the owner did not have it";
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(published_.size(), 2u);
  }
  EXPECT_EQ(owner->locked_keys(), 0u);
}

// The owner's records in the outbox's store (2026-12-03, gw10): the `committed` record rides in
// the publisher's batch with the outbox entry, already `published` (one fsync for both, atomic),
// and nothing goes through the participant's group writer for it. An acknowledged commit
// survives a crash of the machine and is not published again.
TEST_F(participant_test, AnOwnersCommittedRecordGoesInTheOutboxBatch) {
  records_in_outbox_ = true;
  for (int mode : {0, 1, 2}) {
    SCOPED_TRACE(set_publish_mode(mode));
    machine_ = std::make_shared<machine>();
    published_.clear();
    owner_->data["k"] = R"({"id":"k","name":"old"})";
    {
      auto p = make(config::participant_role::owner);
      ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 10)).status, 200u);
      // A repeated prepare is answered from the group writer behind the `prepared` record: once
      // it is answered, nothing of tx1 is queued there, and the commit takes the outbox's batch.
      ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k","name":"new"})", 10)).status, 200u);
      auto r = p->commit("tx1");
      ASSERT_EQ(r.status, 200u) << r.body;
      EXPECT_EQ(p->locked_keys(), 0u);
      {
        std::lock_guard lock(mu_);
        ASSERT_EQ(published_.size(), 1u);
        EXPECT_EQ(published_[0].with, 2u) << "the record and its time index";
      }
      std::string v;
      ASSERT_FALSE(p->store().get("ttx1", v));
      auto rec = decode_record(v);
      ASSERT_TRUE(rec);
      EXPECT_EQ(rec->state, tx_state::committed);
      EXPECT_TRUE(rec->published);
      EXPECT_EQ(p->commit("tx1").status, 200u) << "repeated";
    }
    machine_->crash();
    outcomes_->coordinator = "aborted";  // what a coordinator that forgot it answers
    auto p = make(config::participant_role::owner);
    p->resolve_overdue();
    EXPECT_EQ(p->locked_keys(), 0u);
    EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("committed"));
    EXPECT_EQ(owner_value("k"), R"({"id":"k","name":"new"})") << "a committed change was compensated";
    EXPECT_EQ(outcomes_->asked.load(), 0);
    {
      std::lock_guard lock(mu_);
      EXPECT_EQ(published_.size(), 1u) << "published once: the record said so atomically with the entry";
    }
    outcomes_->coordinator = "";
  }
}

// A refused publish (outbox full, store failure) writes neither the entry nor the record: the
// store still holds `prepared`, the key stays held, and the coordinator's retry commits.
TEST_F(participant_test, ARefusedPublishInTheOutboxBatchLeavesTheTransactionPrepared) {
  records_in_outbox_ = true;
  for (int mode : {0, 1, 2}) {
    SCOPED_TRACE(set_publish_mode(mode));
    kv_ = std::make_shared<store::memory_kv>();
    published_.clear();
    auto p = make(config::participant_role::owner);
    ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 4)).status, 200u);
    ASSERT_EQ(p->prepare("tx1", put("k", R"({"id":"k"})", 4)).status, 200u);
    fail_publish_ = true;
    auto r = p->commit("tx1");
    EXPECT_EQ(r.status, 503u) << r.body;
    EXPECT_EQ(p->locked_keys(), 1u);
    std::string v;
    ASSERT_FALSE(kv_->get("ttx1", v));
    ASSERT_TRUE(decode_record(v));
    EXPECT_EQ(decode_record(v)->state, tx_state::prepared);
    EXPECT_THAT(p->query("tx1", 0).body, HasSubstr("prepared"));
    EXPECT_EQ(p->prepare("tx2", put("k", R"({"id":"k"})", 5)).status, 409u) << "the key is still held";
    fail_publish_ = false;
    r = p->commit("tx1");
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(p->locked_keys(), 0u);
    ASSERT_FALSE(kv_->get("ttx1", v));
    EXPECT_EQ(decode_record(v)->state, tx_state::committed);
    std::lock_guard lock(mu_);
    EXPECT_EQ(published_.size(), 1u);
  }
}

class migrate_test : public ::testing::Test {
 protected:
  void SetUp() override {
    // No process id in the name: the death test's child (a new process) must find the same one.
    // The binary's path is in it: the ASan and TSan builds of this test run at the same time.
    const auto binary = std::hash<std::string>{}(std::filesystem::read_symlink("/proc/self/exe").string());
    dir_ =
        std::filesystem::path(::testing::TempDir()) / ("datashare-migrate-" + std::to_string(binary) + "-" +
                                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    old_ = (dir_ / "participant" / "products").string();
    outbox_ = (dir_ / "outbox" / "products").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::unique_ptr<store::kv> open(const std::string& dir) {
    std::string error;
    auto kv = store::open_rocksdb(dir, {}, error);
    EXPECT_TRUE(kv) << error;
    return kv;
  }

  // What the releases before this one left in dataDir/participant/<product>: a prepared
  // transaction (binary, format 1) and a committed one whose publish was pending (JSON, format
  // 0, "published": false); and an outbox with an entry not yet sent.
  void write_old_layout() {
    tx_record a;
    a.state = tx_state::prepared;
    a.key = "ka";
    a.value = R"({"id":"ka"})";
    a.version = 5;
    a.since_us = 1;
    store::write_batch b;
    b.put("tta", encode_record(a));
    b.put("ttb", R"({"deleted":false,"hadPrevious":false,"key":"kb","peers":[],"previous":"",)"
                 R"("published":false,"since":12,"state":"committed","value":"{\"id\":\"kb\"}","version":7})");
    ASSERT_FALSE(open(old_)->write(b, true));
    store::write_batch e;
    e.put(std::string("e\0\0\0\0\0\0\0\0", 9), "entry");
    e.put("mnext", std::string("\0\0\0\0\0\0\0\1", 8));
    ASSERT_FALSE(open(outbox_)->write(e, true));
  }

  void expect_moved(const store::kv& outbox) {
    std::string v;
    EXPECT_FALSE(outbox.get("tta", v));
    EXPECT_FALSE(outbox.get("ttb", v));
    EXPECT_FALSE(outbox.get(std::string("e\0\0\0\0\0\0\0\0", 9), v)) << "the outbox's own entries stay";
    EXPECT_FALSE(outbox.get("mnext", v));
  }

  std::filesystem::path dir_;
  std::string old_, outbox_;
};

// An owner sidecar of an earlier release upgraded: its participant's store is moved into the
// outbox's, and the participant there takes up where the old one was (the prepared transaction
// holds its key and asks; the committed one is published again, same version).
TEST_F(migrate_test, AnOwnerStoreOfTheOldLayoutIsMovedIntoTheOutboxStore) {
  write_old_layout();
  auto outbox = open(outbox_);
  std::string error;
  std::size_t moved = 0;
  ASSERT_FALSE(migrate_store(old_, *outbox, error, &moved)) << error;
  EXPECT_EQ(moved, 2u);
  EXPECT_FALSE(std::filesystem::exists(old_));
  EXPECT_FALSE(std::filesystem::exists(old_ + ".migrated"));
  expect_moved(*outbox);
  ASSERT_FALSE(migrate_store(old_, *outbox, error, &moved)) << "nothing left to move: " << error;
  EXPECT_EQ(moved, 0u);

  config::participate_spec spec;
  spec.product = "products";
  spec.role = config::participant_role::owner;
  spec.coordinator_url = "http://gw:8080";
  spec.lock_timeout = 0ms;  // the prepared one asks at once
  participant_options o;
  o.records_in_outbox = true;
  o.ask_backoff = 0ms;
  o.background = false;  // what start() found is looked at below, before anything resolves it
  auto outcomes = std::make_shared<fake_outcomes_state>();
  outcomes->coordinator = "committed";
  std::mutex mu;
  std::vector<std::uint64_t> versions;
  participant p(
      spec, products(), {}, std::make_unique<borrowed_kv>(*outbox),
      std::make_unique<fake_owner>(std::make_shared<fake_owner_state>()),
      [&](const std::string&, const std::optional<std::string>&, std::uint64_t version, store::write_batch with,
          const publish_callback& done) {
        if (!with.empty()) {
          EXPECT_FALSE(outbox->write(with, true));
        }
        {
          std::lock_guard lock(mu);
          versions.push_back(version);
        }
        done({}, "");
      },
      std::make_unique<fake_outcomes>(outcomes), o);
  ASSERT_FALSE(p.start(error)) << error;
  EXPECT_EQ(p.locked_keys(), 2u);
  p.resolve_overdue();
  EXPECT_EQ(p.locked_keys(), 0u);
  EXPECT_THAT(p.query("ta", 0).body, HasSubstr("committed"));
  EXPECT_THAT(p.query("tb", 0).body, HasSubstr("committed"));
  p.stop();
  std::lock_guard lock(mu);
  std::sort(versions.begin(), versions.end());
  EXPECT_EQ(versions, (std::vector<std::uint64_t>{5, 7}));
}

// The sidecar killed between the copy and the removal: the next start copies again (the same
// records over themselves) and removes the old store; one killed while deleting the renamed
// store deletes the rest.
TEST_F(migrate_test, AMigrationKilledBetweenCopyAndRemovalIsRunAgain) {
  write_old_layout();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        std::string error;
        auto outbox = open(outbox_);
        (void)migrate_store(old_, *outbox, error, nullptr, [] { std::_Exit(9); });
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(9), "");
  EXPECT_TRUE(std::filesystem::exists(old_)) << "killed before the removal";
  auto outbox = open(outbox_);
  expect_moved(*outbox);  // the copy was synced before the kill
  std::string error;
  std::size_t moved = 0;
  ASSERT_FALSE(migrate_store(old_, *outbox, error, &moved)) << error;
  EXPECT_EQ(moved, 2u);
  EXPECT_FALSE(std::filesystem::exists(old_));
  expect_moved(*outbox);

  std::filesystem::create_directories(old_ + ".migrated/half-deleted");
  ASSERT_FALSE(migrate_store(old_, *outbox, error, &moved)) << error;
  EXPECT_EQ(moved, 0u);
  EXPECT_FALSE(std::filesystem::exists(old_ + ".migrated"));
  expect_moved(*outbox);
}

}  // namespace
}  // namespace datashare::sidecar::participant
