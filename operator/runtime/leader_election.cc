#include "operator/runtime/leader_election.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>

namespace datashare::runtime {
namespace {

std::string string_at(const kube::json& spec, const char* field) {
  auto it = spec.find(field);
  return it != spec.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t int_at(const kube::json& spec, const char* field, int64_t fallback) {
  auto it = spec.find(field);
  return it != spec.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

kube::json spec_of(const kube::json& lease) {
  auto it = lease.find("spec");
  return it != lease.end() && it->is_object() ? *it : kube::json::object();
}

std::string random_uuid() {
  std::random_device rd;
  std::array<uint32_t, 4> words{rd(), rd(), rd(), rd()};
  std::array<unsigned char, 16> b{};
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<unsigned char>(words[i / 4] >> (8 * (i % 4)));
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

}  // namespace

std::string default_identity() {
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0 || host[0] == '\0') return "unknown_" + random_uuid();
  return std::string(host.data()) + "_" + random_uuid();
}

leader_elector::leader_elector(kube::client& client, leader_election_config config)
    : client_(client),
      config_(std::move(config)),
      clock_(config_.time_source != nullptr ? *config_.time_source : default_clock()) {
  using std::chrono::duration_cast;
  using fseconds = std::chrono::duration<double>;
  if (config_.lease_name.empty() || config_.lease_namespace.empty()) {
    throw std::invalid_argument("leader election: the lease needs a name and a namespace");
  }
  if (config_.jitter_factor < 0) throw std::invalid_argument("leader election: jitter_factor must be >= 0");
  if (config_.retry_period <= clock::duration::zero() || !(config_.lease_duration > config_.renew_deadline) ||
      !(duration_cast<fseconds>(config_.renew_deadline).count() >
        (1 + config_.jitter_factor) * duration_cast<fseconds>(config_.retry_period).count())) {
    throw std::invalid_argument(
        "leader election: need lease_duration > renew_deadline > retry_period * (1 + jitter_factor) > 0");
  }
  if (config_.identity.empty()) config_.identity = default_identity();
  if (!config_.wall_now) config_.wall_now = system_wall_clock;
  lease_seconds_ = std::max(1, static_cast<int>(std::ceil(duration_cast<fseconds>(config_.lease_duration).count())));
}

bool leader_elector::is_leader() const {
  return leading_.load();
}

std::string leader_elector::leader() const {
  std::lock_guard lock(mu_);
  return observed_holder_;
}

void leader_elector::report(const std::string& what, const std::exception& e) const {
  if (config_.on_error) config_.on_error(what, e);
}

void leader_elector::set_status(bool leading) {
  if (config_.on_master_status) config_.on_master_status(leading);
}

// The lease record changed since we last looked: restart the expiry countdown from now, on our
// own clock. An unchanged record keeps counting down, however recent its renewTime claims to be.
void leader_elector::observe_locked(const kube::json& lease) {
  kube::json spec = spec_of(lease);
  if (observed_lease_.is_null() || spec != observed_spec_) {
    observed_spec_ = spec;
    observed_time_ = clock_.now();
  }
  observed_holder_ = string_at(spec, "holderIdentity");
  observed_lease_ = lease;
}

kube::json leader_elector::new_lease_spec(const kube::json& old_spec, bool renewing) const {
  const std::string now = format_rfc3339_micro(config_.wall_now());
  // Start from what is there so fields this elector does not know (strategy, preferredHolder)
  // survive the update.
  kube::json spec = old_spec.is_object() ? old_spec : kube::json::object();
  spec["holderIdentity"] = config_.identity;
  spec["leaseDurationSeconds"] = lease_seconds_;
  spec["renewTime"] = now;
  if (renewing) {
    const std::string acquired = string_at(old_spec, "acquireTime");
    spec["acquireTime"] = acquired.empty() ? now : acquired;
    spec["leaseTransitions"] = int_at(old_spec, "leaseTransitions", 0);
  } else {
    spec["acquireTime"] = now;
    spec["leaseTransitions"] = old_spec.contains("holderIdentity") || old_spec.contains("leaseTransitions")
                                   ? int_at(old_spec, "leaseTransitions", 0) + 1
                                   : 0;
  }
  return spec;
}

lease_attempt_result leader_elector::try_acquire_or_renew() {
  lease_attempt_result r = lease_attempt_result::failed;
  {
    std::lock_guard lock(mu_);
    try {
      r = attempt_locked(false);
    } catch (const std::exception& e) {
      // Not an API failure (those are handled inside): a lease this elector cannot read.
      report("leader election on lease " + config_.lease_namespace + "/" + config_.lease_name, e);
    }
  }
  if (r == lease_attempt_result::leading) leading_ = true;
  if (r == lease_attempt_result::held_by_other) leading_ = false;
  return r;
}

lease_attempt_result leader_elector::attempt_locked(bool after_conflict) {
  const std::string what = "lease " + config_.lease_namespace + "/" + config_.lease_name;
  kube::json lease;
  try {
    lease = client_.get(kube::resources::leases, config_.lease_namespace, config_.lease_name);
  } catch (const kube::api_error& e) {
    if (!kube::is_not_found(e)) {
      report("get " + what, e);
      return lease_attempt_result::failed;
    }
    kube::json fresh = {{"apiVersion", kube::resources::leases.api_version()},
                        {"kind", kube::resources::leases.kind},
                        {"metadata", {{"name", config_.lease_name}, {"namespace", config_.lease_namespace}}},
                        {"spec", new_lease_spec(kube::json::object(), false)}};
    try {
      observe_locked(client_.create(kube::resources::leases, fresh));
      return lease_attempt_result::leading;
    } catch (const kube::api_error& create_error) {
      // AlreadyExists: another candidate created it first; the next attempt reads theirs.
      report("create " + what, create_error);
      return lease_attempt_result::failed;
    }
  }

  observe_locked(lease);
  const kube::json& spec = observed_spec_;
  const std::string holder = string_at(spec, "holderIdentity");
  const auto duration = std::chrono::seconds(int_at(spec, "leaseDurationSeconds", lease_seconds_));
  if (!holder.empty() && holder != config_.identity && clock_.now() < observed_time_ + duration) {
    return lease_attempt_result::held_by_other;
  }

  kube::json updated = lease;
  updated["spec"] = new_lease_spec(spec, holder == config_.identity);
  try {
    observe_locked(client_.update(kube::resources::leases, updated));
    return lease_attempt_result::leading;
  } catch (const kube::api_error& e) {
    // Someone else wrote the lease since we read it. Read it again at once: if they took it, we
    // must know now, not after the deadline.
    if (kube::is_conflict(e) && !after_conflict) return attempt_locked(true);
    report("update " + what, e);
    return lease_attempt_result::failed;
  }
}

bool leader_elector::release() {
  std::lock_guard lock(mu_);
  if (observed_lease_.is_null() || observed_holder_ != config_.identity) return false;
  leading_ = false;
  const std::string now = format_rfc3339_micro(config_.wall_now());
  kube::json released = observed_lease_;
  kube::json& spec = released["spec"];
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  spec["acquireTime"] = now;
  spec["renewTime"] = now;
  try {
    observe_locked(client_.update(kube::resources::leases, released));
    return true;
  } catch (const std::exception& e) {
    // Conflict: someone changed the lease meanwhile, so it is not ours to release any more.
    report("release lease " + config_.lease_namespace + "/" + config_.lease_name, e);
    return false;
  }
}

void leader_elector::report_new_leader() {
  const std::string holder = leader();
  if (holder == reported_leader_) return;
  reported_leader_ = holder;
  if (!holder.empty() && config_.callbacks.on_new_leader) config_.callbacks.on_new_leader(holder);
}

clock::duration leader_elector::jittered_retry() {
  if (config_.jitter_factor <= 0) return config_.retry_period;
  std::uniform_real_distribution<double> u(0.0, config_.jitter_factor);
  return config_.retry_period + std::chrono::duration_cast<clock::duration>(config_.retry_period * u(rng_));
}

bool leader_elector::sleep_until(clock::time_point deadline, const std::stop_token& stop) {
  // Registered before taking the lock: when stop is already requested the callback runs right
  // here, and it takes the lock itself so that a notify cannot fall between check and wait.
  std::stop_callback wake(stop, [this] {
    std::lock_guard l(wait_mu_);
    wait_cv_.notify_all();
  });
  std::unique_lock lock(wait_mu_);
  while (!stop.stop_requested() && clock_.now() < deadline) clock_.wait_until(wait_cv_, lock, deadline);
  return !stop.stop_requested();
}

void leader_elector::run(const std::stop_token& stop) {
  set_status(false);

  // Campaign.
  clock::time_point last_renewal;
  for (;;) {
    if (stop.stop_requested()) return;
    const auto start = clock_.now();
    const lease_attempt_result r = try_acquire_or_renew();
    report_new_leader();
    if (r == lease_attempt_result::leading) {
      last_renewal = start;
      break;
    }
    if (!sleep_until(clock_.now() + jittered_retry(), stop)) return;
  }

  set_status(true);
  if (config_.callbacks.on_started_leading) config_.callbacks.on_started_leading();

  // Renew. Measured from the *start* of the last successful renewal: the lease cannot have been
  // seen to change any earlier by a candidate, so stepping down renew_deadline after it leaves a
  // margin of lease_duration - renew_deadline before anyone else may take over.
  bool stopped = false;
  auto next = clock_.now() + config_.retry_period;
  for (;;) {
    const auto deadline = last_renewal + config_.renew_deadline;
    if (!sleep_until(std::min(next, deadline), stop)) {
      stopped = true;
      break;
    }
    const auto start = clock_.now();
    if (start >= deadline) {
      report("lease " + config_.lease_namespace + "/" + config_.lease_name,
             std::runtime_error("failed to renew the lease within the renew deadline; stepping down"));
      break;
    }
    const lease_attempt_result r = try_acquire_or_renew();
    report_new_leader();
    if (r == lease_attempt_result::leading) {
      last_renewal = start;
    } else if (r == lease_attempt_result::held_by_other) {
      report("lease " + config_.lease_namespace + "/" + config_.lease_name,
             std::runtime_error("the lease was taken by " + leader() + "; stepping down"));
      break;
    }
    next = clock_.now() + config_.retry_period;
  }

  leading_ = false;
  set_status(false);
  if (stopped && config_.release_on_cancel) release();
  if (config_.callbacks.on_stopped_leading) config_.callbacks.on_stopped_leading();
}

elected_leadership::elected_leadership(kube::client& client, leader_election_config config)
    : user_(config.callbacks), elector_(client, with_hooks(std::move(config))) {}

elected_leadership::~elected_leadership() {
  release();
}

leader_election_config elected_leadership::with_hooks(leader_election_config config) {
  config.callbacks.on_started_leading = [this] {
    {
      std::lock_guard lock(mu_);
      leading_ = true;
    }
    changed_.notify_all();
    if (user_.on_started_leading) user_.on_started_leading();
  };
  config.callbacks.on_stopped_leading = [this] {
    std::function<void()> lost;
    {
      std::lock_guard lock(mu_);
      leading_ = false;
      if (!releasing_) lost = lost_;
    }
    if (user_.on_stopped_leading) user_.on_stopped_leading();
    if (lost) lost();
  };
  return config;
}

bool elected_leadership::acquire(const std::stop_token& stop, std::function<void()> lost) {
  std::unique_lock lock(mu_);
  lost_ = std::move(lost);
  if (!thread_.joinable() && !ended_ && !releasing_) {
    thread_ = std::jthread([this](const std::stop_token& election_stop) {
      elector_.run(election_stop);
      {
        std::lock_guard l(mu_);
        ended_ = true;
      }
      changed_.notify_all();
    });
  }
  changed_.wait(lock, stop, [&] { return leading_ || ended_; });
  if (leading_) return true;
  lock.unlock();
  release();  // stopped while campaigning (or the election ended): nothing to keep running
  return false;
}

void elected_leadership::release() {
  std::jthread thread;
  {
    std::lock_guard lock(mu_);
    releasing_ = true;
    thread = std::move(thread_);
  }
  if (thread.joinable()) {
    thread.request_stop();  // run() releases the lease on its way out
    thread.join();
  }
}

}  // namespace datashare::runtime
