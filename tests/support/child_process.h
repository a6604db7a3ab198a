#pragma once
// Child processes for process-level tests (kill -9, SIGTERM, output checks).

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace datashare::testing {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// A child process of a test, its stdout read line by line (with the time each line arrived) on a
// thread of its own. Killed (SIGKILL) and reaped on destruction if still running.
class child_process {
 public:
  child_process(const std::string& program, const std::vector<std::string>& args) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    std::vector<std::string> argv_strings{program};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(argv_strings.size() + 1);
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (rc != 0) {
      ::close(fds[0]);
      throw std::runtime_error("cannot start " + argv_strings[0] + ": " + std::strerror(rc));
    }
    reader_ = std::thread([this, fd = fds[0]] { read_lines(fd); });
  }

  ~child_process() {
    if (!exit_status_) {
      ::kill(pid_, SIGKILL);
      wait_exit(10s);
    }
    reader_.join();
  }

  void send(int sig) { ::kill(pid_, sig); }

  // The first line starting with `prefix`, and when it arrived; nullopt after `timeout`.
  std::optional<steady::time_point> wait_line(const std::string& prefix, steady::duration timeout) {
    std::unique_lock lock(mu_);
    std::optional<steady::time_point> at;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto& [line, when] : lines_) {
        if (line.rfind(prefix, 0) == 0) {
          at = when;
          return true;
        }
      }
      return false;
    });
    return at;
  }

  bool has_line(const std::string& prefix) { return wait_line(prefix, 0s).has_value(); }

  // The rest of the first line starting with `prefix`; nullopt after `timeout`.
  std::optional<std::string> line_after(const std::string& prefix, steady::duration timeout) {
    if (!wait_line(prefix, timeout)) return std::nullopt;
    std::lock_guard lock(mu_);
    for (const auto& [line, when] : lines_) {
      if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
    }
    return std::nullopt;
  }

  std::string output() {
    std::lock_guard lock(mu_);
    std::string all;
    for (const auto& [line, when] : lines_) all += line + "\n";
    return all;
  }

  // The exit status (WEXITSTATUS, or 128 + signal); nullopt if still running after `timeout`.
  std::optional<int> wait_exit(steady::duration timeout) {
    for (auto until = steady::now() + timeout; !exit_status_ && steady::now() < until;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else {
        std::this_thread::sleep_for(10ms);
      }
    }
    return exit_status_;
  }

 private:
  void read_lines(int fd) {
    std::string pending;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      const auto now = steady::now();
      pending.append(buf, static_cast<size_t>(n));
      std::lock_guard lock(mu_);
      for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
        lines_.emplace_back(pending.substr(0, nl), now);
      }
      cv_.notify_all();
    }
    ::close(fd);
  }

  pid_t pid_ = 0;
  std::optional<int> exit_status_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, steady::time_point>> lines_;
};

}  // namespace datashare::testing
