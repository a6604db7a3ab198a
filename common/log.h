#pragma once
// Structured logs: one line per record, `key=value` (logfmt) or JSON, to stderr.
//
//   log::info("reconciled", {{"controller", "dsp"}, {"namespace", ns}, {"name", name}});
//
// Thread-safe: each record is formatted aside and written with one call, so lines from many
// threads never interleave. The level and format are process-wide and set once at start-up
// (the operator's --zap-log-level / --log-format flags).

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace datashare::log {

enum class level { debug = 0, info = 1, warn = 2, error = 3 };
enum class format { logfmt, json };

using field = std::pair<std::string_view, std::string>;

void set_level(level l);
void set_format(format f);
bool enabled(level l);

// Parses "debug" | "info" | "warn" | "error", or a zap-style number as controller-runtime's
// --zap-log-level takes it ("0" info, "1" and more debug). False when `text` is none of these.
bool parse_level(std::string_view text, level& out);

void write(level l, std::string_view message, std::initializer_list<field> fields = {});

inline void debug(std::string_view m, std::initializer_list<field> f = {}) {
  write(level::debug, m, f);
}
inline void info(std::string_view m, std::initializer_list<field> f = {}) {
  write(level::info, m, f);
}
inline void warn(std::string_view m, std::initializer_list<field> f = {}) {
  write(level::warn, m, f);
}
inline void error(std::string_view m, std::initializer_list<field> f = {}) {
  write(level::error, m, f);
}

// The formatted record without writing it (for tests).
std::string format_record(level l, std::string_view message, std::initializer_list<field> fields, format f,
                          std::string_view timestamp);

}  // namespace datashare::log
