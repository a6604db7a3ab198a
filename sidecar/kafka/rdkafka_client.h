#pragma once
// The librdkafka implementation of the Kafka seam, configured from the sidecar config's `kafka`
// section: bootstrap servers, client id, TLS and SASL (passwords read from their file or
// environment variable when a client is made, never logged) and the pass-through properties.

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "sidecar/config/config.h"
#include "sidecar/kafka/client.h"

namespace datashare::sidecar::kafka {

std::unique_ptr<client_factory> make_rdkafka_factory(const config::kafka_settings& settings);

// Asks the broker for metadata with these settings, every `every`, until it answers (nullopt),
// `stop` is set (nullopt), or the broker has kept refusing this client's credentials (SASL) or
// its TLS handshake for `persist`: then what librdkafka said, naming the refusal. Credentials
// are read once, when a client is made, so retrying cannot help until they are fixed. A broker
// that cannot be reached is not a refusal: the clients wait for it as for any outage.
std::optional<std::string> await_broker_answer(const config::kafka_settings& settings, const std::atomic<bool>& stop,
                                               std::chrono::milliseconds persist = std::chrono::seconds(5),
                                               std::chrono::milliseconds every = std::chrono::seconds(1));

}  // namespace datashare::sidecar::kafka
