#include "common/memory.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

namespace datashare {

void limit_malloc_arenas(int arenas) {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return;
  mallopt(M_ARENA_MAX, arenas);
}

std::size_t release_code_pages() {
  std::ifstream in("/proc/self/smaps");
  if (!in) return 0;
  struct mapping {
    std::uintptr_t begin = 0, end = 0;
    bool code = false;  // r-xp, backed by a file
    std::size_t rss_kb = 0, anonymous_kb = 0;
  };
  std::size_t released = 0;
  auto release = [&released](const mapping& m) {
    if (!m.code || m.anonymous_kb != 0 || m.rss_kb == 0) return;
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the address comes from the kernel's own listing
    if (::madvise(reinterpret_cast<void*>(m.begin), m.end - m.begin, MADV_DONTNEED) == 0) released += m.rss_kb * 1024;
  };
  mapping current;
  std::string line;
  while (std::getline(in, line)) {
    std::size_t dash = line.find('-');
    std::size_t space = line.find(' ');
    if (dash != std::string::npos && space != std::string::npos && dash < space &&
        line.find_first_not_of("0123456789abcdef") == dash) {
      release(current);  // a new mapping's header: "begin-end perms offset dev inode path"
      current = {};
      std::istringstream h(line);
      std::string range, perms, offset, dev, inode, path;
      h >> range >> perms >> offset >> dev >> inode >> path;
      current.begin = std::stoull(range.substr(0, dash), nullptr, 16);
      current.end = std::stoull(range.substr(dash + 1), nullptr, 16);
      current.code = perms == "r-xp" && !path.empty() && path[0] == '/';
      continue;
    }
    auto field = [&line](const char* name, std::size_t& out) {
      std::size_t n = std::char_traits<char>::length(name);
      if (line.compare(0, n, name) == 0) out = std::strtoull(line.c_str() + n, nullptr, 10);
    };
    field("Rss:", current.rss_kb);
    field("Anonymous:", current.anonymous_kb);
  }
  release(current);
  return released;
}

namespace {

// The first number in the file, or nothing ("max", absent, unreadable, or not a number).
std::optional<std::size_t> read_bytes(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word.empty() || word.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  try {
    return static_cast<std::size_t>(std::stoull(word));
  } catch (const std::exception&) {
    return std::nullopt;  // beyond 64 bits: no limit
  }
}

}  // namespace

bool release_free_memory() {
  return malloc_trim(0) != 0;
}

std::size_t memory_limit(const memory_roots& roots) {
  std::size_t limit = 0;
  auto take = [&limit](std::optional<std::size_t> bytes) {
    if (bytes && *bytes > 0 && (limit == 0 || *bytes < limit)) limit = *bytes;
  };
  // MemTotal, in kB.
  {
    std::ifstream in(roots.proc + "/meminfo");
    std::string key;
    std::size_t kb = 0;
    while (in >> key >> kb) {
      if (key == "MemTotal:") {
        take(kb * 1024);
        break;
      }
      in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
  }
  // /proc/self/cgroup: "0::/path" (v2) or "N:controllers:/path" (v1, the line naming memory).
  std::ifstream in(roots.proc + "/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find(':');
    const auto second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (path == "/") path.clear();
    if (controllers.empty()) {  // v2: the unified hierarchy
      take(read_bytes(roots.cgroup + path + "/memory.max"));
      take(read_bytes(roots.cgroup + "/memory.max"));
      take(read_bytes(roots.cgroup + "/unified" + path + "/memory.max"));  // hybrid mounts
      continue;
    }
    std::stringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) {
      if (name != "memory") continue;
      take(read_bytes(roots.cgroup + "/memory" + path + "/memory.limit_in_bytes"));
      take(read_bytes(roots.cgroup + "/memory/memory.limit_in_bytes"));
    }
  }
  return limit;
}

}  // namespace datashare
