#pragma once
// The Kafka seam (STYLE.md, Envoy's note): the sidecar's code talks to these small interfaces;
// rdkafka_client.h wraps librdkafka behind them, fake_broker.h is an in-memory broker for unit
// tests with failure injection. Integration tests use the real broker.
//
// Errors are std::error_code in category "datashare.kafka" whose values are librdkafka's error
// codes (rd_kafka_resp_err_t), so a message names the real cause. Hot-path calls never throw.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "sidecar/config/config.h"
#include "sidecar/kafka/message.h"

namespace datashare::sidecar::kafka {

const std::error_category& kafka_category();
std::error_code make_error(int rd_kafka_resp_err);

// librdkafka error codes the sidecar reacts to (values of rd_kafka_resp_err_t).
inline constexpr int kErrQueueFull = -184;         // RD_KAFKA_RESP_ERR__QUEUE_FULL
inline constexpr int kErrTimedOut = -185;          // RD_KAFKA_RESP_ERR__TIMED_OUT
inline constexpr int kErrMsgTimedOut = -192;       // RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
inline constexpr int kErrTransport = -195;         // RD_KAFKA_RESP_ERR__TRANSPORT
inline constexpr int kErrInterrupted = -163;       // RD_KAFKA_RESP_ERR__INTR (a start given up on stop)
inline constexpr int kErrUnknownTopic = 3;         // RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
inline constexpr int kErrTopicAlreadyExists = 36;  // RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS

inline constexpr std::int64_t kOffsetBeginning = -2;

struct partition_offset {
  std::int32_t partition = 0;
  std::int64_t offset = kOffsetBeginning;
};

// A consumer of one topic with explicitly assigned partitions. Every replica of a policy needs
// the whole dataset, so partitions are assigned, not balanced across a group; the group id is
// used to commit offsets for outside tools only. One thread uses it at a time.
class consumer {
 public:
  virtual ~consumer() = default;
  virtual std::error_code partitions(const std::string& topic, std::chrono::milliseconds timeout,
                                     std::vector<std::int32_t>& out) = 0;
  virtual std::error_code assign(const std::string& topic, const std::vector<partition_offset>& start) = 0;
  // Asks the broker for the high watermark (the offset after the last message).
  virtual std::error_code query_high_watermark(const std::string& topic, std::int32_t partition,
                                               std::chrono::milliseconds timeout, std::int64_t& high) = 0;
  // The high watermark last seen in a fetch response, without a request; -1 when unknown.
  virtual std::int64_t cached_high_watermark(const std::string& topic, std::int32_t partition) = 0;
  // When (wall clock, microseconds since the epoch) the leaders of the assigned partitions of
  // `topic` were last all heard from, so when the cached watermarks were last current; -1 when
  // not known. A broker that goes away or freezes stops fetch responses without an error, and
  // the cache does not age by itself: this does.
  virtual std::int64_t last_answer_us(const std::string& topic) = 0;
  // Waits up to `timeout` for a first message, then takes what is already there, up to `max`.
  // `out` is replaced by what was polled; the strings of the messages it held may be reused for
  // the new ones (no allocations per message in a steady stream).
  // A returned error is informational (the consumer keeps trying); `out` may still hold messages.
  virtual std::error_code poll(std::chrono::milliseconds timeout, std::size_t max, std::vector<message>& out) = 0;
  // Commits offsets to the group, asynchronously; best effort.
  virtual void commit(const std::string& topic, const std::vector<partition_offset>& offsets) = 0;
};

struct delivery {
  std::uint64_t token = 0;  // what produce() was given
  std::error_code error;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

using delivery_callback = std::function<void(const delivery&)>;

// A producer. produce() may be called from any thread; delivery reports are served by poll()
// and flush(), on the calling thread, through the callback given at creation.
class producer {
 public:
  virtual ~producer() = default;
  // Queues a message (key and value copied). kErrQueueFull: poll and retry.
  virtual std::error_code produce(const std::string& topic, std::optional<std::string_view> key,
                                  std::optional<std::string_view> value, const std::vector<header>& headers,
                                  std::int64_t timestamp_ms, std::uint64_t token) = 0;
  virtual void poll(std::chrono::milliseconds timeout) = 0;
  // Waits until everything queued is delivered or failed (and reported), or the timeout passes.
  virtual std::error_code flush(std::chrono::milliseconds timeout) = 0;
  // A fatal error (idempotence broken): the producer must be replaced. Empty when fine.
  virtual std::error_code fatal_error() = 0;
};

// Creates topics (the dead-letter topic, which nobody else may have created) and grows them.
class admin {
 public:
  virtual ~admin() = default;
  // Creates `topic` unless it exists (then returns no error).
  virtual std::error_code ensure_topic(const std::string& topic, int partitions,
                                       const std::vector<std::pair<std::string, std::string>>& config,
                                       std::chrono::milliseconds timeout, std::string& detail) = 0;
  // Grows `topic` to `total` partitions (Kafka cannot shrink one). A running replica picks the
  // new partitions up at its next metadata check (replica_options::partition_check_interval).
  virtual std::error_code add_partitions(const std::string& topic, int total, std::chrono::milliseconds timeout,
                                         std::string& detail) = 0;
};

// Builds the clients; the sidecar's code receives a factory, tests give their own.
class client_factory {
 public:
  virtual ~client_factory() = default;
  virtual std::unique_ptr<consumer> make_consumer(const std::string& group, std::string& error) = 0;
  // `idempotent`: enable.idempotence=true, acks=all (the publisher); otherwise acks=all only.
  virtual std::unique_ptr<producer> make_producer(bool idempotent, delivery_callback on_delivery,
                                                  std::string& error) = 0;
  virtual std::unique_ptr<admin> make_admin(std::string& error) = 0;
};

}  // namespace datashare::sidecar::kafka
