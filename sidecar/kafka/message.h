#pragma once
// A Kafka record as the sidecar sees it, independent of librdkafka: what the consumer seam hands
// to the replica and the producer seam takes from the publisher. Plain data, owns its bytes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace datashare::sidecar::kafka {

struct header {
  std::string name;
  std::optional<std::string> value;  // Kafka headers may carry a null value
};

struct message {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;  // nullopt: a tombstone (deleted)
  std::vector<header> headers;
  std::int64_t timestamp_ms = 0;

  // The value of the last header called `name` (Kafka allows repeats; the last one wins), or
  // nullopt when absent or valueless. Points into this message.
  std::optional<std::string_view> header_value(std::string_view name) const {
    for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
      if (it->name == name) return it->value ? std::optional<std::string_view>(*it->value) : std::nullopt;
    }
    return std::nullopt;
  }
};

}  // namespace datashare::sidecar::kafka
