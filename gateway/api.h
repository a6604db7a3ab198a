#pragma once
// The coordinator's HTTP API:
//   data port   PUT|DELETE /v1/data/<product>/<key>   a transaction (200 + Datashare-Version, 400,
//                                                      409, 503, 504; 503 until recovered)
//               GET /v1/tx/<id>                        the outcome, for participants' termination
//               /healthz /readyz /metrics
//   admin port  /healthz /readyz (200 once recovered) /metrics
//
// Threading: handlers on the HTTP I/O threads; a transaction answers through its responder when
// the coordinator's callback runs (nothing blocks).

#include "gateway/coordinator.h"
#include "sidecar/http/server.h"

namespace datashare::gateway {

class api {
 public:
  api(const gateway_config& config, coordinator& c, gateway_metrics& metrics)
      : config_(config), coordinator_(c), metrics_(metrics) {}
  void handle_data(const sidecar::http::request& req, const sidecar::http::responder& respond);
  void handle_admin(const sidecar::http::request& req, const sidecar::http::responder& respond);

 private:
  const gateway_config& config_;
  coordinator& coordinator_;
  gateway_metrics& metrics_;
};

}  // namespace datashare::gateway
