#pragma once
// Command-line flags in the style operators use (`--name=value`, `--name value`, `--bool`,
// `--bool=false`). Every problem is reported, with the flag's name, before anything starts.

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace datashare {

// Not thread-safe; used once at start-up. Targets must outlive parse().
class flag_set {
 public:
  explicit flag_set(std::string program) : program_(std::move(program)) {}

  void add(const std::string& name, std::string* target, const std::string& help);
  void add(const std::string& name, bool* target, const std::string& help);
  void add(const std::string& name, int* target, const std::string& help);
  // Go-style durations: "300ms", "15s", "2m", "1h30m".
  void add(const std::string& name, std::chrono::milliseconds* target, const std::string& help);

  // Parses argv[1..]; returns every problem found ("--lease-duration: not a duration: 5x").
  // Positional arguments are refused. "--help" sets help_requested().
  std::vector<std::string> parse(int argc, const char* const* argv);
  bool help_requested() const { return help_; }
  std::string usage() const;

  // How a main ends its flag handling: after --help, the usage on stdout and 0; with problems
  // (parse()'s and the program's own checks), each as "<program>: <problem>" and the usage on
  // stderr, and 2; otherwise nothing, and the program goes on.
  std::optional<int> exit_code(const std::vector<std::string>& problems) const;

 private:
  struct flag {
    std::string help;
    std::string default_text;
    bool is_bool = false;
    std::function<std::string(const std::string&)> set;  // returns an error, or ""
  };
  std::string program_;
  std::map<std::string, flag> flags_;
  bool help_ = false;
};

// "300ms" → 300 ms; false when `text` is not a Go-style duration, or one over 10^12 ms (~31 years).
bool parse_duration(const std::string& text, std::chrono::milliseconds& out);

}  // namespace datashare
