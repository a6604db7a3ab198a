#pragma once
// The sidecar's local HTTP API (DESIGN.md §4), the same whatever the mode:
//   GET    /v1/data/<product>/<key>             one entity (404 when absent)
//   GET    /v1/data/<product>?keys=a,b,c        several (at most 1000), found and missing
//   GET    /v1/data/<product>[?limit=&after=]   a page of the scan (limit ≤ 1000, default 100)
//   PUT    /v1/data/<product>/<key>             publish a change (owner side), 202 once durable
//   DELETE /v1/data/<product>/<key>             publish a deletion
//   GET    /healthz, /readyz, /metrics
// Reads carry `Datashare-Version` (single entity) and `Datashare-Staleness-Ms`. Keys are
// percent-decoded. Anything malformed is a 4xx with a JSON error body, never a crash.
//
// Sync and hybrid policies (a sync_proxy per policy): a single-entity GET is answered from the
// owner through the proxy (sync), or merged from the local copy (`fields`) and the proxy
// (`syncFields`) (hybrid), with a `Datashare-Sources` header naming where each field came from
// and how old it is. When the local copy is outside its staleness budget (not ready: behind
// maxLag or not caught up) or lacks the key, hybrid reads take every field from the owner and say
// so (`fallback=max-lag|not-in-copy`). Batch and scan reads of a sync-only product answer 501;
// for hybrid products they serve the local fields.
//
// Threading: handle_* run on HTTP I/O threads, concurrently; the router holds no mutable state
// (the replicas, publishers and metrics it points to are thread-safe) and must outlive the server.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sidecar/http/server.h"
#include "sidecar/metrics/metrics.h"
#include "sidecar/proxy/proxy.h"
#include "sidecar/publisher/publisher.h"
#include "sidecar/replica/replica.h"

namespace datashare::sidecar::api {

inline constexpr std::size_t kMaxBatchKeys = 1000;
inline constexpr std::size_t kMaxPage = 1000;
inline constexpr std::size_t kDefaultPage = 100;

// "%41b+c" → "Ab+c" (a '+' stays: keys are path segments, not form data); nullopt when malformed.
std::optional<std::string> percent_decode(std::string_view s);

class router {
 public:
  router(metrics::registry& metrics, const std::vector<replica::replica*>& replicas,
         const std::vector<publisher::publisher*>& publishers, const std::vector<proxy::sync_proxy*>& proxies = {});

  // The data port: everything.
  void handle_data(const http::request& req, const http::responder& respond) const;
  // The admin port: probes and metrics only.
  void handle_admin(const http::request& req, const http::responder& respond) const;

  // Serves reads of `product` from a copy kept by the gateway (a participant's store, in the
  // replica's layout). Call before the server starts. `held_ms(key)`: how long a gateway
  // transaction has held `key` at this copy (prepared here, maybe committed elsewhere since), 0
  // when none does; a read's Datashare-Staleness-Ms (the most of its keys'). Without it, 0.
  // `released()`: a count that grows whenever a transaction frees a key here; a scan (whose keys
  // are only known once read) that sees it grow meanwhile may hold a value older than a commit
  // that landed during it, and says so (staleness at least 1 ms).
  using held_ms_fn = std::function<std::int64_t(const std::string& key)>;
  using released_fn = std::function<std::uint64_t()>;
  void add_copy(const std::string& product, const store::kv* copy, held_ms_fn held_ms = {}, released_fn released = {});

  // Whether every replica is ready (and every component started).
  bool ready() const;

 private:
  void route_data(const http::request& req, const http::responder& respond) const;
  void route_admin(const http::request& req, const http::responder& respond) const;
  // `held` (a gateway copy's): the staleness is computed per key read, over `staleness_ms`.
  http::response read(const store::kv& kv, const std::string& staleness_ms, std::string_view product,
                      std::string_view rest, std::string_view query, const held_ms_fn* held = nullptr,
                      const released_fn* released = nullptr) const;
  http::response readiness() const;
  // A single-entity read of a sync or hybrid policy; answers through `respond`, maybe later.
  // The local part of a merged read: a replica's store, or a copy kept by the gateway.
  struct local_copy {
    const store::kv* kv = nullptr;
    bool ready = false;
    std::int64_t staleness_ms = 0;
  };
  void read_through(proxy::sync_proxy& p, const local_copy* local, std::string_view key_raw,
                    const http::responder& respond) const;

  metrics::registry& metrics_;
  std::map<std::string, replica::replica*, std::less<>> replicas_;
  std::map<std::string, publisher::publisher*, std::less<>> publishers_;
  std::map<std::string, proxy::sync_proxy*, std::less<>> proxies_;
  struct gateway_copy {
    const store::kv* kv = nullptr;
    held_ms_fn held_ms;    // may be empty
    released_fn released;  // may be empty
  };
  std::map<std::string, gateway_copy, std::less<>> copies_;
};

}  // namespace datashare::sidecar::api
