#include "operator/runtime/finalizers.h"

#include <gtest/gtest.h>

namespace datashare::runtime {
namespace {

constexpr const char* kMine = "datashare.io/cleanup";

kube::json object(kube::json finalizers, const char* rv = "42") {
  kube::json o = {{"metadata", {{"name", "x"}, {"namespace", "n"}, {"resourceVersion", rv}}}};
  if (!finalizers.is_null()) o["metadata"]["finalizers"] = std::move(finalizers);
  return o;
}

TEST(FinalizersTest, HasFinalizer) {
  EXPECT_FALSE(has_finalizer(object(nullptr), kMine));
  EXPECT_FALSE(has_finalizer(object({"other"}), kMine));
  EXPECT_TRUE(has_finalizer(object({"other", kMine}), kMine));
  EXPECT_FALSE(has_finalizer(kube::json::object(), kMine));
}

TEST(FinalizersTest, AddAppendsAndGuardsWithTheResourceVersion) {
  auto patch = add_finalizer(object({"other"}), kMine);
  ASSERT_TRUE(patch);
  // The whole list (a merge patch replaces lists), with the version it was computed from, so a
  // concurrent change to the list makes the patch fail with a Conflict instead of undoing it.
  EXPECT_EQ(*patch, kube::json::parse(R"({"metadata":{"finalizers":["other","datashare.io/cleanup"],
                                                       "resourceVersion":"42"}})"));
  EXPECT_FALSE(add_finalizer(object({kMine}), kMine));

  auto first = add_finalizer(object(nullptr), kMine);
  ASSERT_TRUE(first);
  EXPECT_EQ((*first)["metadata"]["finalizers"], kube::json({kMine}));
}

TEST(FinalizersTest, RemoveKeepsTheOthersAndDropsAnEmptyList) {
  auto patch = remove_finalizer(object({"a", kMine, "b"}), kMine);
  ASSERT_TRUE(patch);
  EXPECT_EQ(*patch, kube::json::parse(R"({"metadata":{"finalizers":["a","b"],"resourceVersion":"42"}})"));

  auto last = remove_finalizer(object({kMine}), kMine);
  ASSERT_TRUE(last);
  EXPECT_TRUE((*last)["metadata"]["finalizers"].is_null());
  EXPECT_EQ((*last)["metadata"]["resourceVersion"], "42");

  EXPECT_FALSE(remove_finalizer(object({"a"}), kMine));
}

TEST(FinalizersTest, AnObjectNeverStoredGetsAnUnguardedPatch) {
  auto patch = add_finalizer(object(nullptr, ""), kMine);
  ASSERT_TRUE(patch);
  EXPECT_FALSE((*patch)["metadata"].contains("resourceVersion"));
}

TEST(FinalizersTest, IsBeingDeleted) {
  kube::json o = object({kMine});
  EXPECT_FALSE(is_being_deleted(o));
  o["metadata"]["deletionTimestamp"] = "2024-05-01T10:00:00Z";
  EXPECT_TRUE(is_being_deleted(o));
  EXPECT_FALSE(is_being_deleted(kube::json::object()));
}

}  // namespace
}  // namespace datashare::runtime
