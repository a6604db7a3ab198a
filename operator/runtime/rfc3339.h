#pragma once
// Wall-clock time as the Kubernetes API writes it. metav1.Time is RFC 3339 to the second
// ("2024-05-01T10:00:00Z"); metav1.MicroTime (Lease renewTime, Event eventTime) has six fraction
// digits ("2024-05-01T10:00:00.123456Z"). Both are always written in UTC.
//
// Wall time is only ever *written* here (timestamps other processes read). Durations and
// deadlines are measured on runtime::clock, which is monotonic and injectable: a wall clock
// can jump, and another machine's wall clock can be anywhere.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace datashare::runtime {

using wall_time_point = std::chrono::system_clock::time_point;

// Where wall time comes from. Components take one so tests can fix the timestamps they write;
// empty means system_wall_clock.
using wall_clock = std::function<wall_time_point()>;

wall_time_point system_wall_clock();

// metav1.Time: seconds, UTC, "Z". The fraction is truncated (as Go's RFC3339 layout does).
std::string format_rfc3339(wall_time_point t);

// metav1.MicroTime: microseconds, UTC, "Z".
std::string format_rfc3339_micro(wall_time_point t);

// Reads either form, with any number of fraction digits (beyond microseconds they are
// truncated) and a "Z" or "+hh:mm"/"-hh:mm" offset. nullopt when malformed.
std::optional<wall_time_point> parse_rfc3339(std::string_view text);

}  // namespace datashare::runtime
