#include "operator/runtime/rfc3339.h"

#include <cstdint>
#include <cstdio>

namespace datashare::runtime {
namespace {

using std::chrono::days;
using std::chrono::microseconds;
using std::chrono::seconds;

std::string format(wall_time_point t, bool micro) {
  const auto us = std::chrono::floor<microseconds>(t);
  const auto day = std::chrono::floor<days>(us);
  const std::chrono::year_month_day date{day};
  const std::chrono::hh_mm_ss time{us - day};
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02lld", static_cast<int>(date.year()),
                        static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                        static_cast<long>(time.hours().count()), static_cast<long>(time.minutes().count()),
                        static_cast<long long>(time.seconds().count()));
  if (micro) {
    n += std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), ".%06lld",
                       static_cast<long long>(time.subseconds().count()));
  }
  std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), "Z");
  return buf;
}

// Reads exactly `width` digits at `pos`, advancing it.
bool digits(std::string_view s, size_t& pos, size_t width, int& out) {
  if (pos + width > s.size()) return false;
  out = 0;
  for (size_t i = 0; i < width; ++i) {
    const char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += width;
  return true;
}

bool expect(std::string_view s, size_t& pos, char c) {
  if (pos >= s.size() || (s[pos] != c && !(c == 'T' && s[pos] == 't'))) return false;
  ++pos;
  return true;
}

}  // namespace

wall_time_point system_wall_clock() {
  return std::chrono::system_clock::now();
}

std::string format_rfc3339(wall_time_point t) {
  return format(t, false);
}

std::string format_rfc3339_micro(wall_time_point t) {
  return format(t, true);
}

std::optional<wall_time_point> parse_rfc3339(std::string_view s) {
  size_t pos = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!digits(s, pos, 4, y) || !expect(s, pos, '-') || !digits(s, pos, 2, mo) || !expect(s, pos, '-') ||
      !digits(s, pos, 2, d) || !expect(s, pos, 'T') || !digits(s, pos, 2, h) || !expect(s, pos, ':') ||
      !digits(s, pos, 2, mi) || !expect(s, pos, ':') || !digits(s, pos, 2, sec)) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mo)},
                                         std::chrono::day{static_cast<unsigned>(d)}};
  if (!date.ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;

  microseconds fraction{0};
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    const size_t start = pos;
    int64_t us = 0;
    for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos) {
      if (pos - start < 6) us = us * 10 + (s[pos] - '0');
    }
    if (pos == start) return std::nullopt;
    for (size_t n = pos - start; n < 6; ++n) us *= 10;
    fraction = microseconds(us);
  }

  seconds offset{0};
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = 0, om = 0;
    if (!digits(s, pos, 2, oh) || !expect(s, pos, ':') || !digits(s, pos, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = seconds(sign * (oh * 3600 + om * 60));
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;

  const auto local = std::chrono::sys_days{date} + std::chrono::hours(h) + std::chrono::minutes(mi) + seconds(sec);
  return std::chrono::time_point_cast<wall_time_point::duration>(local - offset + fraction);
}

}  // namespace datashare::runtime
