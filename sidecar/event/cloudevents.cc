#include "sidecar/event/cloudevents.h"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace datashare::sidecar::event {

std::string source_for(const config::product_schema& product) {
  return "/namespaces/" + product.namespace_name + "/dataproducts/" + product.name;
}

std::string type_for(const config::product_schema& product, bool deleted) {
  return "io.datashare." + product.name + (deleted ? ".deleted" : ".updated");
}

std::string format_time(std::int64_t unix_us) {
  std::time_t secs = static_cast<std::time_t>(unix_us / 1'000'000);
  std::int64_t micros = unix_us % 1'000'000;
  if (micros < 0) {
    micros += 1'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // generous: the compiler cannot bound tm_year
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(micros));
  return buf;
}

namespace {

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

namespace {

// The proleptic Gregorian calendar's day number (1970-01-01 = 0) of year/month/day; `day` may
// exceed the month's length.
std::int64_t days_from_civil(std::int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;                                    // [0, 399]
  const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // from March 1st
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * 146097 + doe - 719468;
}

}  // namespace

std::optional<std::int64_t> parse_time(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
  int year = 0, mon = 0, day = 0, hour = 0, min = 0, sec = 0;
  if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, mon) || s[7] != '-' ||
      !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s, 11, 2, hour) ||
      s[13] != ':' || !digits(s, 14, 2, min) || s[16] != ':' || !digits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) return std::nullopt;
  std::size_t pos = 19;
  std::int64_t micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    std::int64_t scale = 100000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      micros += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  std::int64_t offset_s = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh = 0, om = 0;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om)) {
      return std::nullopt;
    }
    offset_s = (static_cast<std::int64_t>(oh) * 3600 + static_cast<std::int64_t>(om) * 60) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  // Days since 1970-01-01 of the civil date, without timegm(): glibc's goes through the time
  // zone machinery (__tz_convert, a lock, mktime's search), ~5 % of a replica's apply loop. Out
  // of range days (February 31) count on into the next month, as timegm() does.
  std::int64_t secs = days_from_civil(year, mon, day) * 86400 + static_cast<std::int64_t>(hour) * 3600 +
                      static_cast<std::int64_t>(min) * 60 + sec - offset_s;
  return secs * 1'000'000 + micros;
}

std::optional<std::uint64_t> parse_version(std::string_view text) {
  std::uint64_t v = 0;
  if (text.empty()) return std::nullopt;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

std::vector<kafka::header> make_headers(const config::product_schema& product, const event_attributes& a) {
  std::vector<kafka::header> h;
  h.reserve(8);
  h.push_back({std::string(kSpecVersionHeader), "1.0"});
  h.push_back({std::string(kIdHeader), a.id});
  h.push_back({std::string(kSourceHeader), source_for(product)});
  h.push_back({std::string(kTypeHeader), type_for(product, a.deleted)});
  h.push_back({std::string(kTimeHeader), format_time(a.time_us)});
  h.push_back({std::string(kSubjectHeader), a.key});
  if (!a.deleted) h.push_back({std::string(kContentTypeHeader), "application/json"});
  h.push_back({std::string(kVersionHeader), std::to_string(a.version)});
  return h;
}

}  // namespace datashare::sidecar::event
