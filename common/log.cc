#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace datashare::log {
namespace {

std::atomic<int> g_level{static_cast<int>(level::info)};
std::atomic<int> g_format{static_cast<int>(format::logfmt)};

const char* name_of(level l) {
  switch (l) {
    case level::debug:
      return "debug";
    case level::info:
      return "info";
    case level::warn:
      return "warn";
    case level::error:
      return "error";
  }
  return "info";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '=' || c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

// JSON string escaping; logfmt quotes use the same escapes.
void append_quoted(std::string& out, std::string_view v) {
  out.push_back('"');
  for (char c : v) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];  // sized for any int the format could print, so nothing is cut
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

void set_level(level l) {
  g_level = static_cast<int>(l);
}
void set_format(format f) {
  g_format = static_cast<int>(f);
}
bool enabled(level l) {
  return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed);
}

bool parse_level(std::string_view text, level& out) {
  if (text == "debug")
    out = level::debug;
  else if (text == "info" || text == "0")
    out = level::info;
  else if (text == "warn")
    out = level::warn;
  else if (text == "error")
    out = level::error;
  else if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos)
    out = level::debug;
  else
    return false;
  return true;
}

std::string format_record(level l, std::string_view message, std::initializer_list<field> fields, format f,
                          std::string_view timestamp) {
  std::string out;
  out.reserve(128);
  if (f == format::json) {
    out += "{\"ts\":";
    append_quoted(out, timestamp);
    out += ",\"level\":";
    append_quoted(out, name_of(l));
    out += ",\"msg\":";
    append_quoted(out, message);
    for (const auto& [k, v] : fields) {
      out.push_back(',');
      append_quoted(out, k);
      out.push_back(':');
      append_quoted(out, v);
    }
    out += "}\n";
    return out;
  }
  out += "ts=";
  out += timestamp;
  out += " level=";
  out += name_of(l);
  out += " msg=";
  append_quoted(out, message);
  for (const auto& [k, v] : fields) {
    out.push_back(' ');
    out += k;
    out.push_back('=');
    if (needs_quotes(v))
      append_quoted(out, v);
    else
      out += v;
  }
  out.push_back('\n');
  return out;
}

void write(level l, std::string_view message, std::initializer_list<field> fields) {
  if (!enabled(l)) return;
  std::string line = format_record(l, message, fields, static_cast<format>(g_format.load()), now_rfc3339());
  // One write(2) per record: atomic for lines under PIPE_BUF on pipes, never interleaved mid-line
  // with other threads' records on files and terminals in practice.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace datashare::log
