#include "common/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace datashare::log {
namespace {

TEST(Log, LogfmtQuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(format_record(level::info, "reconciled", {{"namespace", "orders"}, {"note", "two words"}, {"empty", ""}},
                          format::logfmt, "T"),
            "ts=T level=info msg=\"reconciled\" namespace=orders note=\"two words\" empty=\"\"\n");
}

TEST(Log, JsonIsValidEvenWithControlCharacters) {
  std::string line = format_record(level::error, "bad \"input\"\n",
                                   {{"k", std::string("a\x01"
                                                      "b")}},
                                   format::json, "T");
  auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["msg"], "bad \"input\"\n");
  EXPECT_EQ(parsed["k"], std::string("a\x01"
                                     "b"));
  EXPECT_EQ(parsed["level"], "error");
}

TEST(Log, ParsesLevelsIncludingZapNumbers) {
  level l{};
  EXPECT_TRUE(parse_level("debug", l));
  EXPECT_EQ(l, level::debug);
  EXPECT_TRUE(parse_level("0", l));
  EXPECT_EQ(l, level::info);
  EXPECT_TRUE(parse_level("2", l));
  EXPECT_EQ(l, level::debug);
  EXPECT_FALSE(parse_level("loud", l));
}

TEST(Log, LevelFilters) {
  set_level(level::warn);
  EXPECT_FALSE(enabled(level::info));
  EXPECT_TRUE(enabled(level::error));
  set_level(level::info);
}

}  // namespace
}  // namespace datashare::log
