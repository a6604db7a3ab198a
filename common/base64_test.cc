#include "common/base64.h"

#include <gtest/gtest.h>

#include <vector>

namespace datashare {
namespace {

TEST(Base64, RoundTripsEveryLengthModuloThree) {
  for (const std::string& s :
       std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff\x10", 3)}) {
    auto decoded = base64_decode(base64_encode(s));
    ASSERT_TRUE(decoded.has_value()) << s;
    EXPECT_EQ(*decoded, s);
  }
}

TEST(Base64, MatchesRfc4648Vectors) {
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_decode("Zm9v\nYmFy\n"), "foobar");
}

TEST(Base64, RejectsMalformedInput) {
  EXPECT_FALSE(base64_decode("Zm9").has_value());       // not a multiple of 4
  EXPECT_FALSE(base64_decode("Zm9*").has_value());      // outside the alphabet
  EXPECT_FALSE(base64_decode("Z===").has_value());      // padding too early
  EXPECT_FALSE(base64_decode("Zg==Zg==").has_value());  // padding before the end
  EXPECT_FALSE(base64_decode("Zm=v").has_value());      // data after padding
}

}  // namespace
}  // namespace datashare
