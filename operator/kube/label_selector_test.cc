#include "operator/kube/label_selector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace datashare::kube {
namespace {
using ::testing::HasSubstr;

TEST(LabelSelectorTest, AcceptsWhatTheApiServerAccepts) {
  for (const char* ok :
       {"", "app=shop", "app==shop", "app!=shop", "app", "!legacy", "datashare.io/shard=a", "env in (prod, staging)",
        "env notin (dev)", "app=shop,tier!=db, !legacy", "app=", "a.b-c_d=e.f-g_h"}) {
    EXPECT_EQ(label_selector_problem(ok), std::nullopt) << ok;
  }
}

TEST(LabelSelectorTest, NamesWhatIsWrong) {
  EXPECT_THAT(*label_selector_problem("app=shop,"), HasSubstr("empty requirement"));
  EXPECT_THAT(*label_selector_problem("app=-shop"), HasSubstr("\"-shop\" is not a label value"));
  EXPECT_THAT(*label_selector_problem("App.IO/x=y"), HasSubstr("\"App.IO/x\" is not a label key"));
  EXPECT_THAT(*label_selector_problem("env in (a,b"), HasSubstr("unbalanced parentheses"));
  EXPECT_THAT(*label_selector_problem("env within (a)"), HasSubstr("unknown operator \"within\""));
  EXPECT_THAT(*label_selector_problem("env in (a) x"), HasSubstr("after the closing parenthesis"));
  EXPECT_THAT(*label_selector_problem("a b"), HasSubstr("not a label key"));
  EXPECT_THAT(*label_selector_problem(std::string(64, 'k') + "=v"), HasSubstr("is not a label key"));
  EXPECT_THAT(*label_selector_problem("!"), HasSubstr("not a label key after '!'"));
  EXPECT_THAT(*label_selector_problem("env in ( )"), HasSubstr("an empty set of values"));
}

}  // namespace
}  // namespace datashare::kube
