// Leader election against a scripted API server (fake_transport) on a manual clock: every
// request the elector sends is checked, and time moves only when the test says so.
#include "operator/runtime/leader_election.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "operator/kube/fake_transport.h"

namespace datashare::runtime {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::MatchesRegex;

constexpr const char* kLeasePath = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lock";
constexpr const char* kMe = "me";
constexpr auto kRealTimeout = 10s;

// 2024-05-01T10:00:00Z, the wall time the elector writes.
const wall_time_point kT0 = wall_time_point{} + std::chrono::seconds(1714557600);

struct lease_fields {
  std::string holder;
  std::string rv = "1";
  int duration = 15;
  int transitions = 0;
  // The holder's own timestamps: deliberately far in the past, to show they are not trusted.
  std::string acquire_time = "2000-01-01T00:00:00.000000Z";
  std::string renew_time = "2000-01-01T00:00:00.000000Z";
};

kube::json lease(const lease_fields& f) {
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", {{"name", "lock"}, {"namespace", "ns"}, {"resourceVersion", f.rv}}},
          {"spec",
           {{"holderIdentity", f.holder},
            {"leaseDurationSeconds", f.duration},
            {"leaseTransitions", f.transitions},
            {"acquireTime", f.acquire_time},
            {"renewTime", f.renew_time}}}};
}

kube::testing::scripted_response ok(const kube::json& body, int status = 200) {
  return {status, body.dump()};
}
kube::testing::scripted_response status(int code, const std::string& reason) {
  return {code, kube::json({{"kind", "Status"}, {"reason", reason}, {"code", code}}).dump()};
}

class LeaderElectionTest : public ::testing::Test {
 protected:
  LeaderElectionTest() {
    kube::client_options options;
    options.max_attempts = 1;  // the elector retries on its own schedule
    options.sleep = [](std::chrono::milliseconds) {};
    client_ = std::make_unique<kube::client>(transport_, options);
  }

  leader_election_config config() {
    leader_election_config c;
    c.lease_namespace = "ns";
    c.lease_name = "lock";
    c.identity = kMe;
    c.jitter_factor = 0;  // exact retry periods on the manual clock
    c.time_source = &clock_;
    c.wall_now = [this] { return kT0 + (clock_.now() - start_); };
    c.callbacks.on_started_leading = [this] { log("started"); };
    c.callbacks.on_stopped_leading = [this] { log("stopped"); };
    c.callbacks.on_new_leader = [this](const std::string& id) { log("new " + id); };
    c.on_master_status = [this](bool leading) { log(leading ? "status 1" : "status 0"); };
    return c;
  }

  void log(const std::string& line) {
    {
      std::lock_guard lock(mu_);
      log_.push_back(line);
    }
    cv_.notify_all();
  }
  std::vector<std::string> logged() {
    std::lock_guard lock(mu_);
    return log_;
  }
  bool wait_logged(const std::string& line) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kRealTimeout, [&] { return std::find(log_.begin(), log_.end(), line) != log_.end(); });
  }

  // Requests are recorded as they arrive; waits (in real time) until `n` have.
  bool wait_requests(size_t n) {
    for (auto until = std::chrono::steady_clock::now() + kRealTimeout; std::chrono::steady_clock::now() < until;) {
      if (transport_->requests().size() >= n) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  // Moves time for an elector blocked in run(): waits until it is waiting, advances, and waits
  // until it has sent `requests` requests in all.
  void step(clock::duration d, size_t requests) {
    ASSERT_TRUE(clock_.await_waiters(1));
    clock_.advance(d);
    ASSERT_TRUE(wait_requests(requests));
  }

  kube::json body(size_t i) { return kube::json::parse(transport_->requests().at(i).body); }
  std::string micro(clock::duration since_start) {
    return format_rfc3339_micro(kT0 + std::chrono::duration_cast<wall_time_point::duration>(since_start));
  }

  manual_clock clock_;
  const clock::time_point start_ = clock_.now();
  std::shared_ptr<kube::testing::fake_transport> transport_ = std::make_shared<kube::testing::fake_transport>();
  std::unique_ptr<kube::client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> log_;
};

TEST_F(LeaderElectionTest, AcquiresAnAbsentLeaseByCreatingIt) {
  leader_elector e(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(ok(lease({.holder = kMe, .acquire_time = micro(0s), .renew_time = micro(0s)}), 201));

  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);
  EXPECT_TRUE(e.is_leader());
  EXPECT_EQ(e.leader(), kMe);

  auto requests = transport_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method + " " + requests[0].target, std::string("GET ") + kLeasePath);
  EXPECT_EQ(requests[1].method + " " + requests[1].target, "POST /apis/coordination.k8s.io/v1/namespaces/ns/leases");
  const kube::json created = body(1);
  EXPECT_EQ(created["metadata"]["name"], "lock");
  EXPECT_EQ(created["spec"], kube::json({{"holderIdentity", kMe},
                                         {"leaseDurationSeconds", 15},
                                         {"leaseTransitions", 0},
                                         {"acquireTime", "2024-05-01T10:00:00.000000Z"},
                                         {"renewTime", "2024-05-01T10:00:00.000000Z"}}));
}

TEST_F(LeaderElectionTest, WaitsWhileAnotherHoldsALeaseItHasSeenChangeRecently) {
  leader_elector e(*client_, config());
  // The holder's renewTime is years old by our wall clock; that proves nothing (its clock may be
  // wrong). What counts is that we have not yet watched it stay unchanged for 15 s.
  transport_->push(ok(lease({.holder = "other", .rv = "5"})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::held_by_other);
  EXPECT_FALSE(e.is_leader());
  EXPECT_EQ(e.leader(), "other");

  // The holder renews after 10 s: the countdown starts again from when we saw that.
  clock_.advance(10s);
  transport_->push(ok(lease({.holder = "other", .rv = "6", .renew_time = "2000-01-01T00:00:10.000000Z"})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::held_by_other);
  clock_.advance(10s);  // 20 s since first seen, 10 s since it changed
  transport_->push(ok(lease({.holder = "other", .rv = "6", .renew_time = "2000-01-01T00:00:10.000000Z"})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::held_by_other);

  // No write was attempted.
  for (const auto& r : transport_->requests()) EXPECT_EQ(r.method, "GET");
}

TEST_F(LeaderElectionTest, TakesOverALeaseUnchangedForItsDurationAndCountsTheTransition) {
  leader_elector e(*client_, config());
  const kube::json held = lease({.holder = "other", .rv = "5", .duration = 15, .transitions = 3});
  transport_->push(ok(held));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::held_by_other);

  clock_.advance(14s);
  transport_->push(ok(held));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::held_by_other);

  clock_.advance(1s);
  transport_->push(ok(held));
  transport_->push(ok(lease({.holder = kMe, .rv = "6", .transitions = 4})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);
  EXPECT_TRUE(e.is_leader());

  auto requests = transport_->requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[3].method + " " + requests[3].target, std::string("PUT ") + kLeasePath);
  const kube::json put = body(3);
  // An update of the version we read: had anyone written since, it would be refused.
  EXPECT_EQ(put["metadata"]["resourceVersion"], "5");
  EXPECT_EQ(put["spec"]["holderIdentity"], kMe);
  EXPECT_EQ(put["spec"]["leaseTransitions"], 4);
  EXPECT_EQ(put["spec"]["acquireTime"], micro(15s));
  EXPECT_EQ(put["spec"]["renewTime"], micro(15s));
}

TEST_F(LeaderElectionTest, UsesTheDurationTheHolderWroteNotItsOwn) {
  leader_elector e(*client_, config());  // 15 s
  const kube::json held = lease({.holder = "other", .rv = "5", .duration = 3});
  transport_->push(ok(held));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::held_by_other);
  clock_.advance(3s);
  transport_->push(ok(held));
  transport_->push(ok(lease({.holder = kMe, .rv = "6"})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);
  EXPECT_EQ(body(2)["spec"]["leaseDurationSeconds"], 15);
}

TEST_F(LeaderElectionTest, RenewsItsOwnLeaseKeepingAcquireTimeAndTransitions) {
  leader_elector e(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(
      ok(lease({.holder = kMe, .rv = "1", .transitions = 0, .acquire_time = micro(0s), .renew_time = micro(0s)}), 201));
  ASSERT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);

  clock_.advance(2s);
  transport_->push(ok(lease({.holder = kMe, .rv = "1", .acquire_time = micro(0s), .renew_time = micro(0s)})));
  transport_->push(ok(lease({.holder = kMe, .rv = "2", .acquire_time = micro(0s), .renew_time = micro(2s)})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);

  const kube::json put = body(3);
  EXPECT_EQ(transport_->requests()[3].method, "PUT");
  EXPECT_EQ(put["metadata"]["resourceVersion"], "1");
  EXPECT_EQ(put["spec"]["acquireTime"], micro(0s));
  EXPECT_EQ(put["spec"]["renewTime"], micro(2s));
  EXPECT_EQ(put["spec"]["leaseTransitions"], 0);
}

TEST_F(LeaderElectionTest, AConflictThatRevealsAnotherHolderLosesAtOnce) {
  leader_elector e(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(ok(lease({.holder = kMe, .rv = "1"}), 201));
  ASSERT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);

  clock_.advance(2s);
  transport_->push(ok(lease({.holder = kMe, .rv = "1"})));
  transport_->push(status(409, "Conflict"));
  transport_->push(ok(lease({.holder = "other", .rv = "3", .transitions = 1})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::held_by_other);
  EXPECT_FALSE(e.is_leader());
  EXPECT_EQ(e.leader(), "other");
  EXPECT_EQ(transport_->requests().size(), 5u);  // the conflict was followed by one re-read, no write
}

TEST_F(LeaderElectionTest, AConflictWithTheLeaseStillOursRetriesOnTheNewVersion) {
  leader_elector e(*client_, config());
  transport_->push(ok(lease({.holder = kMe, .rv = "1"})));
  transport_->push(status(409, "Conflict"));
  transport_->push(ok(lease({.holder = kMe, .rv = "2"})));  // say, someone added a label
  transport_->push(ok(lease({.holder = kMe, .rv = "3"})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);
  EXPECT_EQ(body(3)["metadata"]["resourceVersion"], "2");
}

TEST_F(LeaderElectionTest, RacingCreatorLosesWithAlreadyExists) {
  leader_elector e(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(status(409, "AlreadyExists"));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::failed);
  EXPECT_FALSE(e.is_leader());
}

TEST_F(LeaderElectionTest, ASuccessorTakesOverAReleasedLeaseWithoutWaiting) {
  leader_elector e(*client_, config());
  transport_->push(ok(lease({.holder = "", .rv = "9", .duration = 1, .transitions = 2})));
  transport_->push(ok(lease({.holder = kMe, .rv = "10", .transitions = 3})));
  EXPECT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);
  EXPECT_EQ(body(1)["spec"]["leaseTransitions"], 3);
}

TEST_F(LeaderElectionTest, ReleaseEmptiesTheHolderAndShortensTheLease) {
  leader_elector e(*client_, config());
  EXPECT_FALSE(e.release());  // nothing held, nothing sent
  EXPECT_TRUE(transport_->requests().empty());

  transport_->push(ok(lease({.holder = kMe, .rv = "7", .transitions = 2, .acquire_time = micro(0s)})));
  transport_->push(ok(lease({.holder = kMe, .rv = "8", .transitions = 2, .acquire_time = micro(0s)})));
  ASSERT_EQ(e.try_acquire_or_renew(), lease_attempt_result::leading);

  clock_.advance(1s);
  transport_->push(ok(lease({.holder = "", .rv = "9", .duration = 1, .transitions = 2})));
  EXPECT_TRUE(e.release());
  EXPECT_FALSE(e.is_leader());
  auto requests = transport_->requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[2].method, "PUT");  // from the version last written: no read first
  const kube::json put = body(2);
  EXPECT_EQ(put["metadata"]["resourceVersion"], "8");
  EXPECT_EQ(put["spec"]["holderIdentity"], "");
  EXPECT_EQ(put["spec"]["leaseDurationSeconds"], 1);
  EXPECT_EQ(put["spec"]["leaseTransitions"], 2);
  EXPECT_EQ(put["spec"]["renewTime"], micro(1s));

  EXPECT_FALSE(e.release());  // no longer ours
  EXPECT_EQ(transport_->requests().size(), 3u);
}

TEST_F(LeaderElectionTest, RunCampaignsUntilTheHolderExpiresThenLeads) {
  leader_elector e(*client_, config());
  const kube::json held = lease({.holder = "other", .rv = "5", .duration = 15});
  transport_->push(ok(held));
  std::jthread runner([&](const std::stop_token& stop) { e.run(stop); });
  ASSERT_TRUE(wait_requests(1));

  // Every 2 s (the retry period) another read; at 14 s the lease is still valid.
  for (size_t i = 1; i <= 7; ++i) {
    transport_->push(ok(held));
    step(2s, 1 + i);
  }
  EXPECT_THAT(logged(), ElementsAre("status 0", "new other"));

  // At 16 s it has been unchanged for longer than 15 s.
  transport_->push(ok(held));
  transport_->push(ok(lease({.holder = kMe, .rv = "6", .transitions = 1})));
  step(2s, 10);
  ASSERT_TRUE(wait_logged("started"));
  EXPECT_THAT(logged(), ElementsAre("status 0", "new other", "new me", "status 1", "started"));
  EXPECT_TRUE(e.is_leader());

  transport_->push(ok(lease({.holder = "", .rv = "7", .duration = 1, .transitions = 1})));
  runner.request_stop();
  runner.join();
}

TEST_F(LeaderElectionTest, RunStepsDownWhenRenewalFailsForTheRenewDeadline) {
  leader_elector e(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(ok(lease({.holder = kMe, .rv = "1"}), 201));
  std::jthread runner([&](const std::stop_token& stop) { e.run(stop); });
  ASSERT_TRUE(wait_logged("started"));

  // The API server stops answering (the fake answers 599 to anything unscripted): attempts at
  // 2, 4, 6 and 8 s fail, and the elector keeps leading until the deadline.
  for (size_t i = 1; i <= 4; ++i) step(2s, 2 + i);
  EXPECT_TRUE(e.is_leader());
  EXPECT_THAT(logged(), ElementsAre("status 0", "new me", "status 1", "started"));

  // 10 s after the last successful renewal started: step down, without another request.
  ASSERT_TRUE(clock_.await_waiters(1));
  clock_.advance(2s);
  ASSERT_TRUE(wait_logged("stopped"));
  runner.join();  // run() returns after losing: the manager exits
  EXPECT_FALSE(e.is_leader());
  EXPECT_EQ(transport_->requests().size(), 6u);  // no release: the lease may not be ours any more
  EXPECT_THAT(logged(), ElementsAre("status 0", "new me", "status 1", "started", "status 0", "stopped"));
}

TEST_F(LeaderElectionTest, RunStepsDownAtOnceWhenAnotherHolderTookTheLease) {
  leader_elector e(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(ok(lease({.holder = kMe, .rv = "1"}), 201));
  std::jthread runner([&](const std::stop_token& stop) { e.run(stop); });
  ASSERT_TRUE(wait_logged("started"));

  transport_->push(ok(lease({.holder = kMe, .rv = "1"})));
  transport_->push(status(409, "Conflict"));
  transport_->push(ok(lease({.holder = "other", .rv = "2", .transitions = 1})));
  step(2s, 5);
  ASSERT_TRUE(wait_logged("stopped"));
  runner.join();
  EXPECT_THAT(logged(), ElementsAre("status 0", "new me", "status 1", "started", "new other", "status 0", "stopped"));
}

TEST_F(LeaderElectionTest, RunReleasesTheLeaseWhenStopped) {
  leader_elector e(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(ok(lease({.holder = kMe, .rv = "1"}), 201));
  std::jthread runner([&](const std::stop_token& stop) { e.run(stop); });
  ASSERT_TRUE(wait_logged("started"));

  transport_->push(ok(lease({.holder = kMe, .rv = "1"})));
  transport_->push(ok(lease({.holder = kMe, .rv = "2"})));
  step(2s, 4);  // one renewal

  transport_->push(ok(lease({.holder = "", .rv = "3", .duration = 1})));
  ASSERT_TRUE(clock_.await_waiters(1));
  runner.request_stop();
  runner.join();
  auto requests = transport_->requests();
  ASSERT_EQ(requests.size(), 5u);
  EXPECT_EQ(requests[4].method, "PUT");
  EXPECT_EQ(body(4)["spec"]["holderIdentity"], "");
  EXPECT_EQ(body(4)["metadata"]["resourceVersion"], "2");
  EXPECT_THAT(logged(), ElementsAre("status 0", "new me", "status 1", "started", "status 0", "stopped"));
}

TEST_F(LeaderElectionTest, RunStoppedWhileCampaigningCallsNoLeadershipCallbacks) {
  leader_elector e(*client_, config());
  transport_->push(ok(lease({.holder = "other", .rv = "5"})));
  std::jthread runner([&](const std::stop_token& stop) { e.run(stop); });
  ASSERT_TRUE(clock_.await_waiters(1));
  runner.request_stop();
  runner.join();
  EXPECT_THAT(logged(), ElementsAre("status 0", "new other"));
  EXPECT_EQ(transport_->requests().size(), 1u);
}

TEST_F(LeaderElectionTest, CampaignRetriesAreJitteredWithinClientGoBounds) {
  leader_election_config c = config();
  c.jitter_factor = 1.2;
  c.renew_deadline = 10s;
  leader_elector e(*client_, c);
  transport_->push(ok(lease({.holder = "other", .rv = "5"})));
  std::jthread runner([&](const std::stop_token& stop) { e.run(stop); });
  ASSERT_TRUE(clock_.await_waiters(1));
  // Not before one retry period...
  transport_->push(ok(lease({.holder = "other", .rv = "5"})));
  clock_.advance(2s - 1ms);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(transport_->requests().size(), 1u);
  // ...and no later than 2.2 of them.
  clock_.advance(2400ms);
  EXPECT_TRUE(wait_requests(2));
  runner.request_stop();
}

TEST_F(LeaderElectionTest, ElectedLeadershipAcquiresThenReleasesAfterTheWork) {
  elected_leadership leadership(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(ok(lease({.holder = kMe, .rv = "1"}), 201));
  bool lost = false;
  EXPECT_TRUE(leadership.acquire(std::stop_token(), [&] { lost = true; }));
  EXPECT_TRUE(leadership.elector().is_leader());

  transport_->push(ok(lease({.holder = "", .rv = "2", .duration = 1})));
  leadership.release();
  EXPECT_FALSE(lost);  // a release is not a loss
  auto requests = transport_->requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[2].method, "PUT");
  EXPECT_EQ(body(2)["spec"]["holderIdentity"], "");
  EXPECT_THAT(logged(), ElementsAre("status 0", "new me", "status 1", "started", "status 0", "stopped"));
  leadership.release();  // idempotent
}

TEST_F(LeaderElectionTest, ElectedLeadershipReportsALoss) {
  elected_leadership leadership(*client_, config());
  transport_->push(status(404, "NotFound"));
  transport_->push(ok(lease({.holder = kMe, .rv = "1"}), 201));
  std::atomic<bool> lost{false};
  ASSERT_TRUE(leadership.acquire(std::stop_token(), [&] {
    lost = true;
    log("lost");
  }));
  for (size_t i = 1; i <= 4; ++i) step(2s, 2 + i);  // renewals fail
  EXPECT_FALSE(lost);
  ASSERT_TRUE(clock_.await_waiters(1));
  clock_.advance(2s);  // the renew deadline
  ASSERT_TRUE(wait_logged("lost"));
  leadership.release();
  EXPECT_EQ(transport_->requests().size(), 6u);  // nothing to release
}

TEST_F(LeaderElectionTest, ElectedLeadershipStoppedWhileCampaigningReturnsFalse) {
  elected_leadership leadership(*client_, config());
  transport_->push(ok(lease({.holder = "other", .rv = "5"})));
  std::stop_source stop;
  bool lost = false;
  std::thread stopper([&] {
    ASSERT_TRUE(clock_.await_waiters(1));
    stop.request_stop();
  });
  EXPECT_FALSE(leadership.acquire(stop.get_token(), [&] { lost = true; }));
  stopper.join();
  EXPECT_FALSE(lost);
  EXPECT_EQ(transport_->requests().size(), 1u);
}

TEST_F(LeaderElectionTest, RejectsInconsistentTimingAndMissingLease) {
  auto make = [&](auto edit) {
    leader_election_config c = config();
    edit(c);
    leader_elector e(*client_, c);
  };
  EXPECT_THROW(make([](auto& c) { c.renew_deadline = c.lease_duration; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& c) {
                 c.retry_period = 5s;
                 c.jitter_factor = 1.2;
               }),
               std::invalid_argument);
  EXPECT_THROW(make([](auto& c) { c.retry_period = 0s; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& c) { c.lease_name.clear(); }), std::invalid_argument);
  EXPECT_NO_THROW(make([](auto& c) {
    c.lease_duration = 3s;
    c.renew_deadline = 2s;
    c.retry_period = 500ms;
  }));
}

TEST_F(LeaderElectionTest, DefaultIdentityIsHostnameAndARandomSuffix) {
  const std::string a = default_identity();
  EXPECT_THAT(a, MatchesRegex(".+_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_NE(a, default_identity());
  leader_election_config c = config();
  c.identity.clear();
  leader_elector e(*client_, c);
  EXPECT_FALSE(e.identity().empty());
}

}  // namespace
}  // namespace datashare::runtime
