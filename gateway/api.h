#pragma once
// The coordinator's HTTP API:
//   data port   PUT|DELETE /v1/data/<product>/<key>   a transaction (200 + Datashare-Version, 400,
//                                                      409, 503, 504; 503 until recovered)
//               GET /v1/tx/<id>                        the outcome, for participants' termination
//               /healthz /readyz /metrics
//   admin port  /healthz /readyz (200 once recovered) /metrics
//
// Threading: handlers on the HTTP I/O threads; transactions run on `pool` (they block).

#include "common/thread_pool.h"
#include "gateway/coordinator.h"
#include "sidecar/http/server.h"

namespace datashare::gateway {

class api {
 public:
  api(const gateway_config& config, coordinator& c, gateway_metrics& metrics, thread_pool& pool)
      : config_(config), coordinator_(c), metrics_(metrics), pool_(pool) {}
  void handle_data(const sidecar::http::request& req, const sidecar::http::responder& respond);
  void handle_admin(const sidecar::http::request& req, const sidecar::http::responder& respond);

 private:
  const gateway_config& config_;
  coordinator& coordinator_;
  gateway_metrics& metrics_;
  thread_pool& pool_;
};

}  // namespace datashare::gateway
