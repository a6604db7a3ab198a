#pragma once
// The operator's view of Kafka: topics (describe, create, reconfigure, grow, delete) and the
// offsets lag is computed from (a group's committed offsets, partitions' high watermarks).
// rdkafka_admin.h implements it with librdkafka's admin API; unit tests use their own fakes.
//
// Failures throw kafka_error: the message names the topic and librdkafka's cause, ready for a
// condition message.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "controllers/desired/desired.h"

namespace datashare::controllers {

class kafka_error : public std::runtime_error {
 public:
  kafka_error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }  // rd_kafka_resp_err_t
  // Broker unreachable or timed out: retry later, nothing is wrong with the spec.
  bool transient() const;
  // The broker refused the client's credentials (SASL) or its TLS handshake failed: retrying
  // will not help until the Kafka security Secret is fixed.
  bool authentication() const;

 private:
  int code_;
};

class topic_admin {
 public:
  virtual ~topic_admin() = default;
  // nullopt when the topic does not exist. `config` holds the topic's overrides only.
  virtual std::optional<observed_topic> describe(const std::string& topic) = 0;
  // Creates the topic with its config; an existing topic is not an error.
  virtual void create(const desired_topic& topic) = 0;
  // Replaces the topic's overrides with exactly `config` (keys not in it return to the default).
  virtual void set_config(const std::string& topic, const std::map<std::string, std::string>& config) = 0;
  virtual void add_partitions(const std::string& topic, int32_t total) = 0;
  // Returns false when the topic did not exist.
  virtual bool remove(const std::string& topic) = 0;
  // Committed offsets of `group` for partitions 0..partitions-1; a partition without a committed
  // offset is absent from the map.
  virtual std::map<int32_t, int64_t> committed(const std::string& group, const std::string& topic,
                                               int32_t partitions) = 0;
  virtual std::map<int32_t, int64_t> high_watermarks(const std::string& topic, int32_t partitions) = 0;
};

// Connection settings: bootstrap servers and librdkafka properties (security.protocol, ssl.*,
// sasl.*), secrets included — never logged.
struct kafka_connection {
  std::string bootstrap;
  std::vector<std::pair<std::string, std::string>> properties;
  int request_timeout_ms = 10000;
};

// Throws kafka_error when librdkafka refuses the configuration.
std::unique_ptr<topic_admin> make_rdkafka_admin(const kafka_connection& connection);

}  // namespace datashare::controllers
