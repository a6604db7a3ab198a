#include "common/flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace datashare {
namespace {
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(Flags, ParsesEveryFormOperatorsUse) {
  std::string kubeconfig;
  bool leader_elect = false;
  int workers = 1;
  std::chrono::milliseconds lease{15000};
  flag_set f("op");
  f.add("kubeconfig", &kubeconfig, "path");
  f.add("leader-elect", &leader_elect, "elect");
  f.add("workers", &workers, "n");
  f.add("lease-duration", &lease, "d");
  const char* argv[] = {"op", "--kubeconfig", "/k", "--leader-elect", "--workers=4", "--lease-duration=1m30s"};
  EXPECT_TRUE(f.parse(6, argv).empty());
  EXPECT_EQ(kubeconfig, "/k");
  EXPECT_TRUE(leader_elect);
  EXPECT_EQ(workers, 4);
  EXPECT_EQ(lease, std::chrono::seconds(90));
  EXPECT_THAT(f.usage(), HasSubstr("--lease-duration value"));
}

TEST(Flags, ReportsEveryProblemWithItsFlag) {
  bool b = false;
  int n = 0;
  std::chrono::milliseconds d{};
  flag_set f("op");
  f.add("b", &b, "");
  f.add("n", &n, "");
  f.add("d", &d, "");
  const char* argv[] = {"op", "--b=maybe", "--n=x1", "--d=5x", "--nope", "stray", "--n"};
  EXPECT_THAT(f.parse(7, argv), ElementsAre("--b: not true or false: maybe", "--n: not an integer: x1",
                                            "--d: not a duration (e.g. 300ms, 15s, 2m): 5x", "--nope: unknown flag",
                                            "stray: unexpected argument (flags start with --)", "--n: needs a value"));
}

TEST(Flags, GoDurations) {
  std::chrono::milliseconds d{};
  ASSERT_TRUE(parse_duration("300ms", d));
  EXPECT_EQ(d.count(), 300);
  ASSERT_TRUE(parse_duration("1h2m3s", d));
  EXPECT_EQ(d.count(), 3'723'000);
  ASSERT_TRUE(parse_duration("1.5s", d));
  EXPECT_EQ(d.count(), 1500);
  EXPECT_FALSE(parse_duration("", d));
  EXPECT_FALSE(parse_duration("s", d));
  EXPECT_FALSE(parse_duration("10", d));
  EXPECT_FALSE(parse_duration("10d", d));
  // Too long to mean anything (and beyond int64 milliseconds): refused, not wrapped around.
  EXPECT_FALSE(parse_duration(std::string(60, '6') + "s", d));
  EXPECT_FALSE(parse_duration("400000d", d));
  EXPECT_FALSE(parse_duration("300000000h", d));
  ASSERT_TRUE(parse_duration("8760h", d));  // a year is fine
  EXPECT_EQ(d.count(), 8760LL * 3'600'000);
}

TEST(FlagSetTest, ExitCodeEndsAMainsFlagHandling) {
  std::string config;
  flag_set f("prog");
  f.add("config", &config, "the config file");

  const char* ok[] = {"prog", "--config=a.yaml"};
  EXPECT_TRUE(f.parse(2, ok).empty());
  EXPECT_EQ(f.exit_code({}), std::nullopt);

  const char* bad[] = {"prog", "--nope"};
  auto problems = f.parse(2, bad);
  problems.push_back("--config: required");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(f.exit_code(problems), 2);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, HasSubstr("prog: --nope: unknown flag\nprog: --config: required\n"));
  EXPECT_THAT(err, HasSubstr("usage: prog"));

  const char* help[] = {"prog", "--help", "--nope"};
  problems = f.parse(3, help);
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(f.exit_code(problems), 0);  // help wins over the problems
  EXPECT_THAT(::testing::internal::GetCapturedStdout(), HasSubstr("--config value"));
}

}  // namespace
}  // namespace datashare
