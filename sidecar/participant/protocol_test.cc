#include "sidecar/participant/protocol.h"

#include <gtest/gtest.h>

namespace datashare::sidecar::participant {
namespace {

TEST(TxProtocolTest, PrepareRoundTrips) {
  prepare_request r{"products", "k 1", false, R"({"id":"k 1","name":"a"})", 42, {"http://a:1", "http://b:2"}};
  prepare_request back;
  ASSERT_EQ(decode_prepare(encode_prepare(r), back), "");
  EXPECT_EQ(back.product, "products");
  EXPECT_EQ(back.key, "k 1");
  EXPECT_FALSE(back.deleted);
  EXPECT_EQ(back.value, R"({"id":"k 1","name":"a"})");
  EXPECT_EQ(back.version, 42u);
  EXPECT_EQ(back.peers, r.peers);
  prepare_request del{"products", "k", true, "", 7, {}};
  ASSERT_EQ(decode_prepare(encode_prepare(del), back), "");
  EXPECT_TRUE(back.deleted);
  EXPECT_EQ(back.value, "");
}

TEST(TxProtocolTest, MalformedPreparesAreNamed) {
  prepare_request out;
  EXPECT_EQ(decode_prepare("nope", out), "the body must be a JSON object");
  EXPECT_EQ(decode_prepare(R"({"key":"k"})", out), "product: a non-empty string is required");
  EXPECT_EQ(decode_prepare(R"({"product":"p","key":"k","op":"upsert"})", out), "op: put or delete");
  EXPECT_EQ(decode_prepare(R"({"product":"p","key":"k","op":"put","version":-1})", out),
            "version: a positive integer is required");
  EXPECT_EQ(decode_prepare(R"({"product":"p","key":"k","op":"put","version":1,"value":3})", out),
            "value: a JSON object is required with op put");
  EXPECT_EQ(decode_prepare(R"({"product":"p","key":"k","op":"delete","version":1,"peers":[1]})", out),
            "peers: a list of URLs");
}

TEST(TxProtocolTest, Paths) {
  auto p = parse_tx_path("/v1/tx/abc-1_2/prepare");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->id, "abc-1_2");
  EXPECT_EQ(p->op, "prepare");
  EXPECT_EQ(parse_tx_path("/v1/tx/abc")->op, "");
  EXPECT_FALSE(parse_tx_path("/v1/tx/"));
  EXPECT_FALSE(parse_tx_path("/v1/tx/a b/commit"));
  EXPECT_FALSE(parse_tx_path("/v1/tx/abc/"));
  EXPECT_FALSE(parse_tx_path("/v1/data/x"));
  EXPECT_FALSE(parse_tx_path("/v1/tx/" + std::string(65, 'a')));
  EXPECT_EQ(read_member(R"({"state":"prepared"})", "state"), "prepared");
  EXPECT_EQ(read_member("garbage", "state"), "");
  EXPECT_EQ(decode_product(encode_product("products")), "products");
  EXPECT_FALSE(decode_product("{}"));
}

}  // namespace
}  // namespace datashare::sidecar::participant
