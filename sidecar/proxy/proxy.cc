#include "sidecar/proxy/proxy.h"

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/url.h"
#include "sidecar/event/json_scan.h"

namespace datashare::sidecar::proxy {

using metrics::sync_outcome;
using std::chrono::milliseconds;

const char* to_string(source s) {
  switch (s) {
    case source::owner:
      return "owner";
    case source::cache:
      return "cache";
    case source::stale_cache:
      return "cache-stale";
    case source::none:
      return "none";
  }
  return "?";
}

// One owner fetch for one key (the coalesced callers wait on it).
struct sync_proxy::fetch {
  std::string key;
  std::string target;
  std::chrono::steady_clock::time_point deadline;
  int attempt = 0;         // retries done so far
  std::string last_cause;  // of the previous failed attempt
  sync_outcome last_outcome = sync_outcome::owner_error;
};

namespace {

// The owner's value against the product's type. More lenient than the replica for integers: an
// owner serialising 2 as 2.0 (a float in its language) still answers an integer field.
bool has_type(const event::json_member& m, config::field_type t) {
  using config::field_type;
  using event::json_kind;
  switch (t) {
    case field_type::string:
      return m.kind == json_kind::string;
    case field_type::number:
      return m.kind == json_kind::number || m.kind == json_kind::integer;
    case field_type::integer: {
      if (m.kind == json_kind::integer) return true;
      if (m.kind != json_kind::number) return false;
      const std::string text(m.value);
      const double v = std::strtod(text.c_str(), nullptr);
      return std::isfinite(v) && std::trunc(v) == v;
    }
    case field_type::boolean:
      return m.kind == json_kind::boolean;
    case field_type::object:
      return m.kind == json_kind::object;
    case field_type::array:
      return m.kind == json_kind::array;
  }
  return false;
}

double seconds_since(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point now) {
  return std::chrono::duration<double>(now - start).count();
}

}  // namespace

bool sync_proxy::project(std::string_view body, const config::product_schema& product,
                         const std::vector<std::string>& fields, std::string& out, std::string& error) {
  // One pass over the owner's text, no document: validate it, then copy the fields' values as
  // they are (a proxied read is on the owner's latency path: no parse tree, no re-serialising).
  thread_local std::vector<event::json_member> members;
  members.clear();
  switch (event::scan_json_object(body, members)) {
    case event::json_scan_result::invalid:
      error = "the owner's answer is not JSON";
      return false;
    case event::json_scan_result::not_an_object:
      error = "the owner's answer is not a JSON object";
      return false;
    case event::json_scan_result::object:
      break;
  }
  out.clear();
  out.reserve(body.size() + 2);
  out.push_back('{');
  for (const auto& name : fields) {
    const event::json_member* found = event::last_member(members, name);
    if (found == nullptr || found->kind == event::json_kind::null) continue;
    const config::field* f = product.find(name);
    if (f != nullptr && !has_type(*found, f->type)) {
      error = "field \"" + name + "\" of the owner's answer is not of type " + std::string(config::to_string(f->type));
      return false;
    }
    if (out.size() > 1) out.push_back(',');
    out += event::quote_json_string(name);
    out.push_back(':');
    out.append(found->value);
  }
  out.push_back('}');
  return true;
}

sync_proxy::sync_proxy(const config::subscribe_spec& spec, std::vector<std::string> fields,
                       std::unique_ptr<owner_client> client, metrics::sync_probe probe, proxy_env env)
    : spec_(spec),
      fields_(std::move(fields)),
      client_(std::move(client)),
      probe_(probe),
      env_(std::move(env)),
      breaker_(spec.sync.breaker_consecutive_failures, spec.sync.breaker_open_for),
      cache_(spec.sync.cache_max_entries, spec.sync.cache_ttl),
      max_in_flight_(spec.sync.max_in_flight),
      rng_(env_.jitter_seed) {
  const auto at = spec_.owner_read_path.find("{key}");
  path_prefix_ = spec_.owner_read_path.substr(0, at);
  path_suffix_ = at == std::string::npos ? "" : spec_.owner_read_path.substr(at + 5);
  probe_.circuit_state->Set(0);
}

sync_proxy::~sync_proxy() = default;

std::string sync_proxy::error_body(const std::string& message, const std::string& cause) const {
  return nlohmann::json{{"error", message}, {"policy", spec_.policy}, {"cause", cause}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void sync_proxy::read(const std::string& key, callback done, std::optional<milliseconds> max_age) {
  const auto start = env_.now();
  if (auto hit = cache_.get(key, start); hit && hit->fresh && (!max_age || hit->age <= *max_age)) {
    probe_.cache_hits->Increment();
    probe_.observe(sync_outcome::cache, seconds_since(start, env_.now()));
    done(sync_result{.status = 200,
                     .body = std::move(hit->value),
                     .from = source::cache,
                     .age = hit->age,
                     .outcome = sync_outcome::cache});
    return;
  }
  probe_.cache_misses->Increment();
  const bool leader = coalescer_.join(key, [this, start, done = std::move(done)](const sync_result& r) {
    probe_.observe(r.outcome, seconds_since(start, env_.now()));
    done(r);
  });
  if (!leader) return;
  auto f = std::make_shared<fetch>();
  f->key = key;
  f->target = path_prefix_ + url::percent_encode_segment(key) + path_suffix_;
  f->deadline = start + spec_.sync.timeout;
  attempt(f);
}

void sync_proxy::attempt(const std::shared_ptr<fetch>& f) {
  const auto now = env_.now();
  if (now >= f->deadline) {
    fail(f, sync_outcome::timeout,
         "no answer within " + std::to_string(spec_.sync.timeout.count()) + "ms" +
             (f->last_cause.empty() ? "" : " (last: " + f->last_cause + ")"));
    return;
  }
  // Bulkhead before breaker: a refused slot must not consume the half-open probe.
  if (inflight_.fetch_add(1) >= max_in_flight_) {
    inflight_.fetch_sub(1);
    fail(f, sync_outcome::bulkhead_full,
         std::to_string(max_in_flight_) + " owner calls already in flight (sync.maxInFlight)");
    return;
  }
  if (!breaker_.allow(now)) {
    inflight_.fetch_sub(1);
    show_circuit();
    fail(f, sync_outcome::circuit_open,
         "circuit open after " + std::to_string(spec_.sync.breaker_consecutive_failures) + " consecutive failures" +
             (f->last_cause.empty() ? "" : " (last: " + f->last_cause + ")"));
    return;
  }
  show_circuit();
  probe_.inflight->Increment();
  client_->get(f->target, f->deadline, [this, f](const fetch_result& r) {
    inflight_.fetch_sub(1);
    probe_.inflight->Decrement();
    on_response(f, r);
  });
}

void sync_proxy::on_response(const std::shared_ptr<fetch>& f, const fetch_result& r) {
  const auto now = env_.now();
  auto record_failure = [&] {
    breaker_.on_failure(now);
    show_circuit();
  };
  auto record_success = [&] {
    breaker_.on_success();
    show_circuit();
  };
  switch (r.outcome) {
    case fetch_result::kind::timeout:
      record_failure();
      fail(f, sync_outcome::timeout, "no answer within " + std::to_string(spec_.sync.timeout.count()) + "ms");
      return;
    case fetch_result::kind::connect_error:
    case fetch_result::kind::io_error:
      record_failure();
      retry_or_fail(f, sync_outcome::owner_error, r.detail);
      return;
    case fetch_result::kind::response:
      break;
  }
  if (r.status == 200) {
    std::string projected, error;
    if (!project(r.body, spec_.product, fields_, projected, error)) {
      // A broken owner counts against the circuit; retrying would read the same bytes.
      record_failure();
      fail(f, sync_outcome::malformed, error);
      return;
    }
    record_success();
    cache_.put(f->key, projected, now);
    complete(f,
             sync_result{
                 .status = 200, .body = std::move(projected), .from = source::owner, .outcome = sync_outcome::owner});
    return;
  }
  if (r.status == 404) {
    record_success();
    cache_.erase(f->key);  // the owner says it is gone: a stale copy must not come back
    complete(f, sync_result{.status = 404,
                            .body = error_body("no such key in " + spec_.product.name, "the owner answered 404"),
                            .outcome = sync_outcome::not_found});
    return;
  }
  const std::string cause = "the owner answered " + std::to_string(r.status);
  if (r.status >= 500 || r.status == 429) {
    record_failure();
    retry_or_fail(f, sync_outcome::owner_error, cause);
    return;
  }
  // Any other status: the owner is up but refuses this read; retrying will not help.
  record_success();
  fail(f, sync_outcome::owner_error, cause);
}

void sync_proxy::retry_or_fail(const std::shared_ptr<fetch>& f, sync_outcome outcome, const std::string& cause) {
  f->last_cause = cause;
  f->last_outcome = outcome;
  if (f->attempt >= spec_.sync.retry_attempts || !env_.schedule) {
    fail(f, outcome, cause);
    return;
  }
  // Exponential backoff with "equal jitter": half the step fixed, half random, so retries of
  // many callers spread out without ever collapsing to zero.
  const auto step = spec_.sync.retry_backoff * (1LL << std::min(f->attempt, 20));
  milliseconds delay = step / 2;
  if (step.count() > 1) {
    std::lock_guard lock(rng_mu_);
    delay += milliseconds(std::uniform_int_distribution<long long>(0, step.count() / 2)(rng_));
  }
  if (env_.now() + delay >= f->deadline) {
    fail(f, outcome, cause);
    return;
  }
  ++f->attempt;
  env_.schedule(delay, [this, f] { attempt(f); });
}

void sync_proxy::fail(const std::shared_ptr<fetch>& f, sync_outcome outcome, const std::string& cause) {
  if (spec_.sync.serve_stale_on_error) {
    if (auto hit = cache_.get(f->key, env_.now())) {
      probe_.fell_back(metrics::fallback_reason::stale_on_error);
      complete(f, sync_result{.status = 200,
                              .body = std::move(hit->value),
                              .from = source::stale_cache,
                              .age = hit->age,
                              .outcome = sync_outcome::stale});
      return;
    }
  }
  unsigned status = 502;
  std::string message = "the owner of " + spec_.product.name + " failed";
  if (outcome == sync_outcome::timeout) {
    status = 504;
    message = "the owner of " + spec_.product.name + " did not answer in time";
  } else if (outcome == sync_outcome::circuit_open || outcome == sync_outcome::bulkhead_full) {
    status = 503;
    message = "the owner of " + spec_.product.name + " is not called now";
  } else if (outcome == sync_outcome::malformed) {
    message = "the owner of " + spec_.product.name + " answered a malformed value";
  }
  complete(f, sync_result{.status = status, .body = error_body(message, cause), .outcome = outcome});
}

void sync_proxy::complete(const std::shared_ptr<fetch>& f, const sync_result& r) {
  coalescer_.complete(f->key, r);
}

}  // namespace datashare::sidecar::proxy
