#pragma once
// Wall-clock time as the project stores and compares it: microseconds since the Unix epoch
// (event times, record times, staleness).

#include <chrono>
#include <cstdint>

namespace datashare::common {

inline std::int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace datashare::common
