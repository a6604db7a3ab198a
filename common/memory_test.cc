#include "common/memory.h"

#include <gtest/gtest.h>

#include <fstream>
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

}  // namespace
}  // namespace datashare
