#pragma once
// The sync proxy of one policy (sync and hybrid modes): reads an entity through its owner, safely.
//
//   read(key) → fresh cache entry? → answer (source cache)
//             → coalesce: one owner call per key at a time, every concurrent caller gets its result
//             → bulkhead (max in-flight owner calls, beyond it fail fast: 503)
//             → circuit breaker (open: fail fast 503, or serve stale)
//             → GET owner readPath, deadline = timeout; reads retried on connection errors and
//               5xx/429 with exponential backoff and jitter while the deadline allows
//             → the body must be a JSON object whose known fields have their declared types,
//               else 502 and nothing cached; projected to the policy's fields, cached (TTL, LRU)
//             → on failure: the cached value marked stale (serveStaleOnError), else
//               owner 404 → 404, timeout → 504, other failures → 502, with a JSON body naming the
//               policy and the cause.
//
// Threading: read() from any thread; `done` is called exactly once, from a proxy I/O thread or
// inline (cache hits, fail-fast answers). Time and timers come from `proxy_env` (a manual clock
// and scheduler in unit tests). The proxy must outlive its pending reads.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "sidecar/config/config.h"
#include "sidecar/metrics/metrics.h"
#include "sidecar/proxy/breaker.h"
#include "sidecar/proxy/cache.h"
#include "sidecar/proxy/coalescer.h"
#include "sidecar/proxy/owner_client.h"

namespace datashare::sidecar::proxy {

enum class source { owner, cache, stale_cache, none };
const char* to_string(source s);

struct sync_result {
  unsigned status = 200;             // 200, 404, 502, 503, 504
  std::string body;                  // 200: projected JSON object; otherwise a JSON error
  source from = source::none;        // where a 200's value came from
  std::chrono::milliseconds age{0};  // how old the value is (0 straight from the owner)
  metrics::sync_outcome outcome = metrics::sync_outcome::owner;
};

struct proxy_env {
  using time_point = std::chrono::steady_clock::time_point;
  std::function<time_point()> now = [] { return std::chrono::steady_clock::now(); };
  // Runs `fn` after `delay` (retry backoff), on any thread.
  std::function<void(std::chrono::milliseconds, std::function<void()>)> schedule;
  std::uint64_t jitter_seed = std::random_device{}();
};

class sync_proxy {
 public:
  using callback = std::function<void(const sync_result&)>;

  // `fields`: what is read from the owner and kept (the projection); the rest of the owner's
  // object is dropped.
  sync_proxy(const config::subscribe_spec& spec, std::vector<std::string> fields, std::unique_ptr<owner_client> client,
             metrics::sync_probe probe, proxy_env env);
  ~sync_proxy();

  // `max_age`: a cached value older than this is not fresh enough (bounded staleness);
  // defaults to the cache TTL.
  void read(const std::string& key, callback done, std::optional<std::chrono::milliseconds> max_age = std::nullopt);

  circuit_state circuit() const { return breaker_.state(); }
  std::uint32_t inflight() const { return inflight_.load(); }
  const config::subscribe_spec& spec() const { return spec_; }
  const std::vector<std::string>& fields() const { return fields_; }
  metrics::sync_probe& probe() { return probe_; }

  // The owner's body projected to `fields`, or an error saying which field has which wrong type.
  // Pure; public for tests.
  static bool project(std::string_view body, const config::product_schema& product,
                      const std::vector<std::string>& fields, std::string& out, std::string& error);

 private:
  struct fetch;
  void attempt(const std::shared_ptr<fetch>& f);
  void on_response(const std::shared_ptr<fetch>& f, const fetch_result& r);
  // The breaker's state to its gauge (the enum's values are the exported ones).
  void show_circuit() { probe_.circuit_state->Set(static_cast<double>(breaker_.state())); }
  void retry_or_fail(const std::shared_ptr<fetch>& f, metrics::sync_outcome outcome, const std::string& cause);
  void fail(const std::shared_ptr<fetch>& f, metrics::sync_outcome outcome, const std::string& cause);
  void complete(const std::shared_ptr<fetch>& f, const sync_result& r);
  std::string error_body(const std::string& message, const std::string& cause) const;

  config::subscribe_spec spec_;
  std::vector<std::string> fields_;
  std::string path_prefix_, path_suffix_;
  std::unique_ptr<owner_client> client_;
  metrics::sync_probe probe_;
  proxy_env env_;
  circuit_breaker breaker_;
  ttl_cache cache_;
  coalescer<sync_result> coalescer_;
  std::atomic<std::uint32_t> inflight_{0};
  std::uint32_t max_in_flight_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace datashare::sidecar::proxy
