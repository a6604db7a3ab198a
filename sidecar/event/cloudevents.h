#pragma once
// The change-event contract on Kafka (DESIGN.md §4): CloudEvents Kafka protocol binding, binary
// mode. The value is the entity's JSON state (null: deleted); the attributes are headers:
//   ce_specversion=1.0, ce_id, ce_source=/namespaces/<ns>/dataproducts/<name>,
//   ce_type=io.datashare.<product>.updated|deleted, ce_time (RFC 3339), ce_subject=<key>,
//   content-type=application/json (updates), datashare_version=<per-key version, decimal>.
// Pure functions, no I/O; any client (kcat included) can produce events that pass here.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sidecar/config/config.h"
#include "sidecar/kafka/message.h"

namespace datashare::sidecar::event {

inline constexpr std::string_view kSpecVersionHeader = "ce_specversion";
inline constexpr std::string_view kIdHeader = "ce_id";
inline constexpr std::string_view kSourceHeader = "ce_source";
inline constexpr std::string_view kTypeHeader = "ce_type";
inline constexpr std::string_view kTimeHeader = "ce_time";
inline constexpr std::string_view kSubjectHeader = "ce_subject";
inline constexpr std::string_view kContentTypeHeader = "content-type";
inline constexpr std::string_view kVersionHeader = "datashare_version";
inline constexpr std::string_view kDlqReasonHeader = "datashare_dlq_reason";

std::string source_for(const config::product_schema& product);
std::string type_for(const config::product_schema& product, bool deleted);

// "2026-11-22T02:17:43.123456Z" from microseconds since the Unix epoch.
std::string format_time(std::int64_t unix_us);
// RFC 3339 (any number of fractional digits, "Z" or a ±hh:mm offset) to microseconds.
std::optional<std::int64_t> parse_time(std::string_view text);
// A decimal uint64 with nothing else around it.
std::optional<std::uint64_t> parse_version(std::string_view text);

struct event_attributes {
  std::string id;
  std::string key;
  std::uint64_t version = 0;
  std::int64_t time_us = 0;
  bool deleted = false;
};

std::vector<kafka::header> make_headers(const config::product_schema& product, const event_attributes& a);

}  // namespace datashare::sidecar::event
