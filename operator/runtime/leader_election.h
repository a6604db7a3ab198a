#pragma once
// Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics
// (k8s.io/client-go/tools/leaderelection), so operators mixing Go and C++ controllers agree:
//
//   candidate ──lease absent, expired or ours──► leader ──renewed every retry period──► leader
//       ▲   ◄──held by another, not expired──┘      │ renewal failing for renew_deadline, or
//       │                                            │ another holder seen: on_stopped_leading
//       └──────────── (the process exits) ◄──────────┘ stop requested: release, on_stopped_leading
//
// Expiry is judged the way client-go judges it: a candidate never compares the Lease's renewTime
// with its own wall clock (the holder's clock may be anywhere). It notes, on its own monotonic
// clock, when it last saw the lease record *change*, and treats the lease as expired once
// leaseDurationSeconds have passed since then without a change. A holder stops leading after
// renew_deadline (< lease_duration) without a successful renewal, so it has stepped down before
// any candidate can take over. Writes are updates with the resourceVersion that was read: of two
// candidates racing for an expired lease, one gets a Conflict and loses.
//
// Differences from client-go, each on the safe side:
// - The renew deadline counts from the start of the last successful renewal (client-go starts a
//   fresh deadline each round, up to one retry period later).
// - A leader that sees another holder in the lease (after a Conflict) stops at once instead of
//   retrying until the deadline: it has lost, and acting on would be split-brain.
// - A released lease (no holder) is not reported to on_new_leader.
//
// A request that hangs cannot be interrupted, so a leader only notices its deadline after the
// request returns: give the client this elector uses a request timeout well under renew_deadline
// (and max_attempts = 1: the elector retries on its own schedule).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>
#include <thread>

#include "operator/kube/client.h"
#include "operator/runtime/clock.h"
#include "operator/runtime/rfc3339.h"

namespace datashare::runtime {

struct leader_callbacks {
  // This process now leads. Called on run()'s thread; start the leader's work elsewhere and return.
  std::function<void()> on_started_leading;
  // This process no longer leads (renewal failed past the deadline, another holder took the lease,
  // or stop was requested). Called once, only after on_started_leading. The work it guarded must
  // stop now; controller managers exit, as a new leader may already be running.
  std::function<void()> on_stopped_leading;
  // The lease holder changed, as observed by this process (including to itself).
  std::function<void(const std::string& identity)> on_new_leader;
};

struct leader_election_config {
  std::string lease_namespace;
  std::string lease_name;
  // Unique per process; empty: default_identity().
  std::string identity;
  // controller-runtime's defaults. lease_duration is written as whole seconds (rounded up).
  clock::duration lease_duration = std::chrono::seconds(15);
  clock::duration renew_deadline = std::chrono::seconds(10);
  clock::duration retry_period = std::chrono::seconds(2);
  // A candidate waits retry_period × [1, 1 + jitter_factor] between attempts (client-go: 1.2), so
  // that candidates started together do not hit the API server in step. 0 in tests.
  double jitter_factor = 1.2;
  // Release the lease when run() is stopped, so a successor takes over at once instead of after
  // the lease duration.
  bool release_on_cancel = true;
  leader_callbacks callbacks;
  // The leader_election_master_status{name} gauge: called with true on becoming leader, false on
  // losing or releasing the lease, and false once when run() starts.
  std::function<void(bool leading)> on_master_status;
  // Failed requests, for the log; the elector retries on its own.
  std::function<void(const std::string& what, const std::exception& error)> on_error;
  // Monotonic time for every wait and expiry decision. Null: the real clock. Not owned.
  const clock* time_source = nullptr;
  // Wall time for the acquireTime/renewTime the elector writes. Empty: the system clock.
  wall_clock wall_now;
};

// hostname + "_" + a random UUID: unique across restarts and across processes on one host.
std::string default_identity();

// What one attempt found.
enum class lease_attempt_result {
  leading,        // this process holds the lease (acquired or renewed now)
  held_by_other,  // another holder's lease has not expired
  failed,         // the API request failed (or lost a race); try again later
};

// Runs on the thread that calls run(); its callbacks run there too. is_leader(), leader() and
// identity() may be called from any thread. release() may be called from any thread; attempts
// and release() are serialised. Not copyable; refers to the client and the clock, which must
// outlive it.
class leader_elector {
 public:
  // Throws std::invalid_argument unless lease_duration > renew_deadline > retry_period ×
  // (1 + jitter_factor) > 0 and the lease has a name and a namespace.
  leader_elector(kube::client& client, leader_election_config config);

  leader_elector(const leader_elector&) = delete;
  leader_elector& operator=(const leader_elector&) = delete;

  // Campaigns until this process leads, then renews until leadership is lost or `stop` is
  // requested (then, with release_on_cancel, releases the lease). Returns after
  // on_stopped_leading, or when stopped before ever leading. Never throws for API failures.
  // Request stop only once the work leadership guards has finished: a successor may start as
  // soon as the lease is released.
  void run(const std::stop_token& stop);

  // One attempt to acquire or renew, as run() makes every retry period. Public for callers with
  // their own loop, and for tests.
  lease_attempt_result try_acquire_or_renew();

  // Gives the lease up if this process holds it: holderIdentity empty and leaseDurationSeconds 1,
  // so waiting candidates see a change and take over on their next attempt. Returns whether the
  // lease was released. Does not call on_stopped_leading (run() does, on its way out).
  bool release();

  bool is_leader() const;
  // The holder as last observed ("" when none or not yet known).
  std::string leader() const;
  const std::string& identity() const { return config_.identity; }

 private:
  lease_attempt_result attempt_locked(bool after_conflict);
  kube::json new_lease_spec(const kube::json& old_spec, bool renewing) const;
  void observe_locked(const kube::json& lease);
  void report_new_leader();
  void set_status(bool leading);
  bool sleep_until(clock::time_point deadline, const std::stop_token& stop);
  clock::duration jittered_retry();
  void report(const std::string& what, const std::exception& e) const;

  kube::client& client_;
  leader_election_config config_;
  const clock& clock_;
  int lease_seconds_;

  // Guards what the last read or write of the lease told us, and serialises requests.
  mutable std::mutex mu_;
  kube::json observed_lease_;        // the whole object, for its resourceVersion
  kube::json observed_spec_;         // the record whose changes restart the expiry countdown
  clock::time_point observed_time_;  // when observed_spec_ was first seen, on our clock
  std::string observed_holder_;

  std::string reported_leader_;       // run()'s thread only
  std::atomic<bool> leading_{false};  // between on_started_leading and losing or releasing

  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::mt19937 rng_{std::random_device{}()};
};

// A leader_elector on a thread of its own, seen as the two calls a manager makes (they fit
// manager_options::acquire_leadership and release_leadership):
//
//   auto leadership = std::make_shared<elected_leadership>(client, config);
//   options.acquire_leadership = [=](std::stop_token s, std::function<void()> lost) {
//     return leadership->acquire(s, std::move(lost)); };
//   options.release_leadership = [=] { leadership->release(); };
//
// Thread-safe. Owns the election thread; the destructor releases.
class elected_leadership {
 public:
  elected_leadership(kube::client& client, leader_election_config config);
  ~elected_leadership();

  elected_leadership(const elected_leadership&) = delete;
  elected_leadership& operator=(const elected_leadership&) = delete;

  // Starts the election (the first time) and blocks until this process leads (true) or `stop` is
  // requested (false; the election is then ended). `lost` is called, on the election thread, if
  // leadership is lost later other than through release().
  bool acquire(const std::stop_token& stop, std::function<void()> lost);

  // Stops renewing, releases the lease if held, and joins the election thread. Call it once the
  // work leadership guarded has stopped. Idempotent.
  void release();

  const leader_elector& elector() const { return elector_; }

 private:
  leader_election_config with_hooks(leader_election_config config);

  std::mutex mu_;
  std::condition_variable_any changed_;
  bool leading_ = false;
  bool ended_ = false;      // run() returned
  bool releasing_ = false;  // release() asked for the end: not a loss
  std::function<void()> lost_;
  leader_callbacks user_;
  leader_elector elector_;
  std::jthread thread_;  // last: stopped and joined before the members it uses are destroyed
};

}  // namespace datashare::runtime
