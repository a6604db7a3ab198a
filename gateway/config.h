#pragma once
// The gateway coordinator's configuration file (`datashare-gateway --config FILE`), schema
// version 1, rendered by the operator for each DataProduct with strongly consistent copies:
//
//   version: 1
//   product: {name: products, namespace: catalog, key: id, fields: [...]}   # as in the sidecar's
//   dataDir: /var/lib/datashare-gateway          # the decision log
//   listen: {data: {address: 0.0.0.0, port: 8080}, admin: {address: 0.0.0.0, port: 9090}, threads: 1}
//   transaction: {timeout: 5s}
//   participants:
//     - {name: owner, role: owner, url: "http://product-service.catalog:8091"}
//     - {name: orders/order-service-products, role: copy, url: "http://order-service.orders:8091"}
//
// Validated as a whole like the sidecar's (every problem with its path), with the same readers
// (sidecar/config/yaml_reader.h).

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "sidecar/config/config.h"

namespace datashare::gateway {

inline constexpr int kSchemaVersion = 1;

struct participant_spec {
  std::string name;
  sidecar::config::participant_role role = sidecar::config::participant_role::copy;
  std::string url;  // http://host:port of the participant's sidecar (listen.participant)
};

struct gateway_config {
  sidecar::config::product_schema product;
  std::string data_dir;
  sidecar::config::endpoint data{"0.0.0.0", 8080};
  sidecar::config::endpoint admin{"0.0.0.0", 9090};
  // HTTP I/O threads; the participants' calls run on them too. One by default, as the sidecar's:
  // the operator gives the gateway a tenth of a core, and on a shared node each more thread
  // splits every participant link into another lane (smaller batches, cross-thread wake-ups):
  // P5 used 4-37 % more CPU per transaction with two (docs/benchmarks.md). More for a gateway
  // with cores of its own.
  int threads = 1;
  std::chrono::milliseconds timeout{5000};     // a transaction not prepared everywhere by then aborts
  std::vector<participant_spec> participants;  // exactly one owner
};

struct load_result {
  std::optional<gateway_config> config;  // set only when problems is empty
  std::vector<sidecar::config::problem> problems;
};

load_result parse_config(std::string_view yaml_text);
load_result load_config_file(const std::string& path);

}  // namespace datashare::gateway
