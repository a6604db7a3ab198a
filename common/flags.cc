#include "common/flags.h"

#include <cctype>
#include <cmath>
#include <iostream>
#include <sstream>

namespace datashare {

namespace {
constexpr double kMaxDurationMs = 1e12;
}  // namespace

bool parse_duration(const std::string& text, std::chrono::milliseconds& out) {
  if (text.empty()) return false;
  if (text == "0") {
    out = std::chrono::milliseconds(0);
    return true;
  }
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (start == i) return false;
    double value = 0;
    try {
      value = std::stod(text.substr(start, i - start));
    } catch (const std::exception&) {
      return false;
    }
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    const std::string unit = text.substr(unit_start, i - unit_start);
    double scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "m")
      scale = 60'000;
    else if (unit == "h")
      scale = 3'600'000;
    else if (unit == "us" || unit == "µs")
      scale = 0.001;
    else
      return false;
    total_ms += value * scale;
  }
  // Beyond ~31 years it is a typo, and beyond int64 the conversion below would be undefined
  // (the fuzzer found "666...6s" in a DataSharingPolicy's maxLag).
  if (!std::isfinite(total_ms) || total_ms > kMaxDurationMs) return false;
  out = std::chrono::milliseconds(static_cast<int64_t>(total_ms));
  return true;
}

void flag_set::add(const std::string& name, std::string* target, const std::string& help) {
  flags_[name] = {help, *target, false, [target](const std::string& v) {
                    *target = v;
                    return std::string();
                  }};
}

void flag_set::add(const std::string& name, bool* target, const std::string& help) {
  flags_[name] = {help, *target ? "true" : "false", true, [target](const std::string& v) {
                    if (v == "true" || v == "1")
                      *target = true;
                    else if (v == "false" || v == "0")
                      *target = false;
                    else
                      return std::string("not true or false: ") + v;
                    return std::string();
                  }};
}

void flag_set::add(const std::string& name, int* target, const std::string& help) {
  flags_[name] = {help, std::to_string(*target), false, [target](const std::string& v) {
                    try {
                      size_t used = 0;
                      int parsed = std::stoi(v, &used);
                      if (used != v.size()) throw std::invalid_argument(v);
                      *target = parsed;
                    } catch (const std::exception&) {
                      return "not an integer: " + v;
                    }
                    return std::string();
                  }};
}

void flag_set::add(const std::string& name, std::chrono::milliseconds* target, const std::string& help) {
  flags_[name] = {help, std::to_string(target->count()) + "ms", false, [target](const std::string& v) {
                    if (!parse_duration(v, *target)) return "not a duration (e.g. 300ms, 15s, 2m): " + v;
                    return std::string();
                  }};
}

std::vector<std::string> flag_set::parse(int argc, const char* const* argv) {
  std::vector<std::string> problems;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      problems.push_back(arg + ": unexpected argument (flags start with --)");
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) {
      problems.push_back("--" + name + ": unknown flag");
      continue;
    }
    if (!has_value) {
      if (it->second.is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        problems.push_back("--" + name + ": needs a value");
        continue;
      }
    }
    if (std::string err = it->second.set(value); !err.empty()) problems.push_back("--" + name + ": " + err);
  }
  return problems;
}

std::optional<int> flag_set::exit_code(const std::vector<std::string>& problems) const {
  if (help_) {
    std::cout << usage();
    return 0;
  }
  if (problems.empty()) return std::nullopt;
  for (const auto& p : problems) std::cerr << program_ << ": " << p << "\n";
  std::cerr << usage();
  return 2;
}

std::string flag_set::usage() const {
  std::ostringstream out;
  out << "usage: " << program_ << " [flags]\n";
  for (const auto& [name, f] : flags_) {
    out << "  --" << name << (f.is_bool ? "" : " value") << "\n      " << f.help << " (default "
        << (f.default_text.empty() ? "\"\"" : f.default_text) << ")\n";
  }
  return out.str();
}

}  // namespace datashare
