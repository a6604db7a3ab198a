#pragma once
// The librdkafka implementation of the Kafka seam, configured from the sidecar config's `kafka`
// section: bootstrap servers, client id, TLS and SASL (passwords read from their file or
// environment variable when a client is made, never logged) and the pass-through properties.

#include <memory>

#include "sidecar/config/config.h"
#include "sidecar/kafka/client.h"

namespace datashare::sidecar::kafka {

std::unique_ptr<client_factory> make_rdkafka_factory(const config::kafka_settings& settings);

}  // namespace datashare::sidecar::kafka
