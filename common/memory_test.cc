#include "common/memory.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace datashare {
namespace {

// The resident size of this process's read-only, executable file mappings, in KiB.
std::size_t resident_code_kb() {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool code = false;
  std::size_t kb = 0;
  while (std::getline(in, line)) {
    if (line.find(" r-xp ") != std::string::npos) {
      code = line.find('/') != std::string::npos;
    } else if (line.find(" ---p ") != std::string::npos || line.find(" r--p ") != std::string::npos ||
               line.find(" rw-p ") != std::string::npos || line.find(" rwxp ") != std::string::npos) {
      code = false;
    } else if (code && line.rfind("Rss:", 0) == 0) {
      kb += std::stoull(line.substr(4));
    }
  }
  return kb;
}

TEST(memory_test, ReleasesResidentCodePagesAndTheProgramRunsOn) {
  std::size_t before = resident_code_kb();
  ASSERT_GT(before, 0u);
  std::size_t released = release_code_pages();
  EXPECT_GT(released, 0u);
  EXPECT_LT(resident_code_kb(), before);
  // Code runs on after its pages were unmapped (they come back by minor faults).
  std::string s;
  for (int i = 0; i < 1000; ++i) s += std::to_string(i);
  EXPECT_EQ(s.size(), 2890u);
  EXPECT_GT(resident_code_kb(), 0u);
}

// A directory standing for /proc and /sys/fs/cgroup.
class memory_limit_test : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("memory_limit_test." + std::to_string(std::random_device()()));
    roots_.proc = (root_ / "proc").string();
    roots_.cgroup = (root_ / "cgroup").string();
    write("proc/meminfo", "MemTotal:       24683664 kB\nMemFree:         1000 kB\n");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void write(const std::string& path, const std::string& text) {
    auto p = root_ / path;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }

  std::filesystem::path root_;
  memory_roots roots_;
};

constexpr std::size_t kMemTotal = std::size_t{24683664} * 1024;

TEST_F(memory_limit_test, CgroupV2LimitOfTheProcesssOwnCgroup) {
  write("proc/self/cgroup", "0::/kubepods/pod1/c1\n");
  write("cgroup/kubepods/pod1/c1/memory.max", "134217728\n");
  EXPECT_EQ(memory_limit(roots_), std::size_t{128} << 20);
}

TEST_F(memory_limit_test, NoLimitIsThePhysicalMemory) {
  write("proc/self/cgroup", "0::/user.slice\n");
  write("cgroup/user.slice/memory.max", "max\n");
  EXPECT_EQ(memory_limit(roots_), kMemTotal);
  // cgroup v1's "unlimited" is a huge number: the machine's memory is smaller.
  write("proc/self/cgroup", "12:pids:/\n4:cpu,cpuacct:/\n3:memory:/\n0::/\n");
  write("cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(memory_limit(roots_), kMemTotal);
}

TEST_F(memory_limit_test, CgroupV1LimitAtItsPathOrAtTheMountsRoot) {
  write("proc/self/cgroup", "5:memory:/docker/abc\n");
  write("cgroup/memory/docker/abc/memory.limit_in_bytes", "536870912\n");
  EXPECT_EQ(memory_limit(roots_), std::size_t{512} << 20);
  // A container without a cgroup namespace: its own cgroup is mounted at the root.
  std::filesystem::remove_all(root_ / "cgroup/memory/docker");
  write("cgroup/memory/memory.limit_in_bytes", "268435456\n");
  EXPECT_EQ(memory_limit(roots_), std::size_t{256} << 20);
}

TEST_F(memory_limit_test, UnreadableOrMalformedFilesAreNoLimit) {
  write("proc/self/cgroup", "garbage\n0::/a\n");
  write("cgroup/a/memory.max", "-1\n");
  EXPECT_EQ(memory_limit(roots_), kMemTotal);
  std::filesystem::remove(root_ / "proc/meminfo");
  EXPECT_EQ(memory_limit(roots_), 0u);
}

TEST(memory_test, ThisMachinesLimitIsAtMostItsMemory) {
  const std::size_t limit = memory_limit();
  ASSERT_GT(limit, 0u);
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::size_t kb = 0;
  in >> key >> kb;
  ASSERT_EQ(key, "MemTotal:");
  EXPECT_LE(limit, kb * 1024);
}

}  // namespace
}  // namespace datashare
