#include "common/url.h"

#include <gtest/gtest.h>

namespace datashare::url {
namespace {

TEST(Url, EncodesEverythingButUnreserved) {
  EXPECT_EQ(percent_encode_segment("abc-1.2_~Z"), "abc-1.2_~Z");
  EXPECT_EQ(percent_encode_segment("a/b?c d%"), "a%2Fb%3Fc%20d%25");
  EXPECT_EQ(percent_encode_segment("\xC3\xA9"), "%C3%A9");
  EXPECT_EQ(percent_encode_segment(""), "");
}

TEST(Url, DecodeUndoesEncode) {
  const std::string key = "a/b?c d%+\xC3\xA9";
  EXPECT_EQ(percent_decode(percent_encode_segment(key)), key);
  EXPECT_EQ(percent_decode("%41b+c"), "Ab+c");
  EXPECT_EQ(percent_decode("%4"), std::nullopt);
  EXPECT_EQ(percent_decode("%zz"), std::nullopt);
}

TEST(Url, QueryParam) {
  EXPECT_EQ(query_param("ms=20&x=1", "ms"), "20");
  EXPECT_EQ(query_param("ms=20&x=1", "x"), "1");
  EXPECT_EQ(query_param("ms=20&x", "x"), "");
  EXPECT_EQ(query_param("ms=20", "m"), std::nullopt);
  EXPECT_EQ(query_param("k=a%2Fb", "k"), "a/b");
  EXPECT_EQ(query_param("", "k"), std::nullopt);
}

}  // namespace
}  // namespace datashare::url
