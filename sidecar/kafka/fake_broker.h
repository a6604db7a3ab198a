#pragma once
// An in-memory Kafka for unit tests: topics of partitions of messages, and a client_factory
// whose consumers, producers and admin act on it. Failure injection: while `down`, producers
// keep messages queued (as librdkafka does during an outage) and flush() times out, a consumer's
// metadata and watermark queries wait for their whole timeout and time out, and its cached high
// watermarks and last answer stay what they were (fetch responses stop); with
// `fail_deliveries`, each queued message is reported failed. Thread-safe.

#include <atomic>
#include <map>
#include <mutex>

#include "sidecar/kafka/client.h"

namespace datashare::sidecar::kafka {

class fake_broker {
 public:
  void create_topic(const std::string& topic, int partitions);
  // Grows the topic to `total` partitions (never shrinks); false when it does not exist.
  bool add_partitions(const std::string& topic, int total);
  // Appends like a producer with the default partitioner would (hash of the key). Returns the offset.
  std::int64_t append(message m);
  // Appends to the given partition, whatever the key. Returns the offset.
  std::int64_t append_to(std::int32_t partition, message m);
  std::vector<message> read(const std::string& topic, std::int32_t partition) const;
  std::vector<message> read_all(const std::string& topic) const;
  bool has_topic(const std::string& topic) const;

  void set_down(bool down) { down_.store(down); }
  bool down() const { return down_.load(); }
  void set_fail_deliveries(bool fail) { fail_deliveries_.store(fail); }
  bool fail_deliveries() const { return fail_deliveries_.load(); }
  // Every consumer made so far stops handing out messages, without an error, while the broker
  // keeps answering (as a librdkafka consumer that stopped fetching a partition: its cached high
  // watermarks, which come from fetch responses, stay what they were, while a question to the
  // broker, query_high_watermark, still answers the live figure); consumers made after it read as
  // usual.
  void stall_consumers() { stalled_below_.store(consumers_made_.load()); }
  int consumers_made() const { return consumers_made_.load(); }

  std::unique_ptr<client_factory> factory();

 private:
  friend class fake_consumer;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<std::vector<message>>> topics_;
  std::atomic<bool> down_{false};
  std::atomic<bool> fail_deliveries_{false};
  std::atomic<int> consumers_made_{0};
  std::atomic<int> stalled_below_{0};  // consumers numbered below it are stalled
};

}  // namespace datashare::sidecar::kafka
