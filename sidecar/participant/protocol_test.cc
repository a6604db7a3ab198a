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
  // The value goes into the body as the caller wrote it; strings are escaped.
  prepare_request odd{"products", "q\"uo\\te \u00e9\n", false, "{ \"id\" : \"x\",\n \"n\": [1, 2] }",
                      9,          {"http://\"a\":1"}};
  ASSERT_EQ(decode_prepare(encode_prepare(odd), back), "");
  EXPECT_EQ(back.key, odd.key);
  EXPECT_EQ(back.value, R"({"id":"x","n":[1,2]})");
  EXPECT_EQ(back.peers, odd.peers);
}

TEST(TxProtocolTest, BatchesRoundTripInOrder) {
  std::string body;
  append_batch_message(body, "prepare", "tx-1", "{\"a\":\"line\\nbreak\"}\n");
  append_batch_message(body, "commit", "tx_2", R"({"product":"p"})");
  append_batch_message(body, "abort", "3", "");
  std::vector<batch_message> back;
  ASSERT_EQ(decode_batch(body, back), "");
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].op, "prepare");
  EXPECT_EQ(back[0].tx, "tx-1");
  EXPECT_EQ(back[0].body, "{\"a\":\"line\\nbreak\"}\n");
  EXPECT_EQ(back[1].op, "commit");
  EXPECT_EQ(back[1].body, R"({"product":"p"})");
  EXPECT_EQ(back[2].tx, "3");
  EXPECT_EQ(back[2].body, "");

  std::string answers;
  append_batch_answer(answers, 200, R"({"vote":"yes"})");
  append_batch_answer(answers, 409, "x\ny");
  std::vector<batch_answer> got;
  ASSERT_EQ(decode_batch_answers(answers, got), "");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].status, 200u);
  EXPECT_EQ(got[0].body, R"({"vote":"yes"})");
  EXPECT_EQ(got[1].status, 409u);
  EXPECT_EQ(got[1].body, "x\ny");
}

TEST(TxProtocolTest, BrokenBatchesAreRefused) {
  std::vector<batch_message> out;
  EXPECT_EQ(decode_batch("", out), "no message");
  EXPECT_EQ(decode_batch("prepare tx 5\nabc\n", out), "message 1: broken framing");  // too short
  EXPECT_EQ(decode_batch("prepare tx 2\nabc\n", out), "message 1: broken framing");  // no newline after
  EXPECT_EQ(decode_batch("prepare tx -1\n\n", out), "message 1: broken framing");    // bad length
  EXPECT_EQ(decode_batch("prepare tx\n\n", out), "message 1: broken framing");       // no length
  EXPECT_EQ(decode_batch("prepare tx 01\na\n", out), "message 1: broken framing");   // one spelling per length
  std::vector<batch_answer> early;
  EXPECT_EQ(decode_batch_answers("0200 0\n\n", early), "answer 1: bad status");
  EXPECT_EQ(decode_batch("update tx 0\n\n", out), "message 1: op must be prepare, commit or abort");
  EXPECT_EQ(decode_batch("abort tx 0\n\nabort a/b 0\n\n", out), "message 2: invalid transaction id");
  std::string many;
  for (std::size_t i = 0; i <= kMaxBatch; ++i) append_batch_message(many, "abort", "t", "");
  EXPECT_EQ(decode_batch(many, out), "more than " + std::to_string(kMaxBatch) + " messages");
  std::vector<batch_answer> answers;
  EXPECT_EQ(decode_batch_answers("200 3\nab\n", answers), "answer 1: broken framing");
  EXPECT_EQ(decode_batch_answers("2000 0\n\n", answers), "answer 1: bad status");
  EXPECT_EQ(decode_batch_answers("", answers), "");
  EXPECT_TRUE(answers.empty());
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
