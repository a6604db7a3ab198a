#pragma once
// The wire contract between the gateway coordinator and its participants (DESIGN.md §4):
//
//   POST /v1/tx/<id>/prepare  {"product","key","op":"put"|"delete","value":{...}|null,"version",
//                              "peers":["http://..."]}
//        200 {"vote":"yes","state":"prepared"}
//        409 {"vote":"no","reason"}   the key is held by another transaction (client sees 409)
//        400 {"vote":"no","reason"}   the change is malformed
//        503 {"vote":"no","reason"}   something this participant needs failed (the owner, its store)
//   POST /v1/tx/<id>/commit   {"product"}   200 {"state":"committed"}; 409 when the transaction is
//                                           aborted or unknown; 503: try again
//   POST /v1/tx/<id>/abort    {"product"}   200 {"state":"aborted"}; 409 when committed; 503: again
//   GET  /v1/tx/<id>?product=p&version=v    200 {"state":"prepared"|"committed"|"aborted"|"unknown"};
//        a transaction it holds no record of is aborted on the spot (it can no longer vote yes),
//        which is what makes asking a peer safe (cooperative termination), but only while the
//        transaction's version (the coordinator's wall-time µs) is younger than half the record
//        retention: an older one may have been committed here and its record dropped, so the
//        answer is "unknown" (and without a version too).
//   POST /v1/batch            N of the three POSTs above in one exchange (the gateway sends one
//                             when calls queue behind an in-flight one on the same link), framed
//                             as text/x-datashare-batch, each message `<op> <id> <length>\n<body>\n` (op prepare,
//                             commit or abort; body the single call's, length its bytes):
//        200 (text/x-datashare-batch) `<status> <length>\n<body>\n` per message, in the request's order, each exactly
//            what the single call would have answered; sent once every message is answered.
//        400 {"error"} when the framing is broken (nothing was done).
// and on the coordinator:
//   GET  /v1/tx/<id>                        200 {"outcome":"committed"|"aborted"|"pending"};
//                                           503 while it recovers its log. Unknown: aborted
//                                           (presumed abort).
// Every call is idempotent per transaction id.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace datashare::sidecar::participant {

// 1..64 of [A-Za-z0-9_-]: ids travel in paths and store keys.
bool is_valid_tx_id(std::string_view id);

struct prepare_request {
  std::string product;
  std::string key;
  bool deleted = false;
  std::string value;  // JSON object text; empty when deleted
  std::uint64_t version = 0;
  std::vector<std::string> peers;  // the other participants' URLs
};

// `r.value` must be JSON object text (when not deleted): it is copied into the body as it is.
std::string encode_prepare(const prepare_request& r);
// "" and `out` set, or what is wrong with `body`.
std::string decode_prepare(std::string_view body, prepare_request& out);

// {"product": ...}: the body of commit and abort.
std::string encode_product(std::string_view product);
std::optional<std::string> decode_product(std::string_view body);

// The "state" (participants) or "outcome" (coordinator) member of an answer, or "" when absent.
std::string read_member(std::string_view body, const char* member);

// POST /v1/batch (above). At most kMaxBatch messages; the request and its answer are of this type.
constexpr std::size_t kMaxBatch = 512;
inline constexpr std::string_view kBatchContentType = "text/x-datashare-batch";
struct batch_message {
  std::string op;  // prepare | commit | abort
  std::string tx;
  std::string body;
};
struct batch_answer {
  unsigned status = 0;
  std::string body;
};
void append_batch_message(std::string& to, std::string_view op, std::string_view tx, std::string_view body);
// "" and `out` filled, or what is wrong (an op outside the three, an invalid id, a bad length).
std::string decode_batch(std::string_view body, std::vector<batch_message>& out);
void append_batch_answer(std::string& to, unsigned status, std::string_view body);
std::string decode_batch_answers(std::string_view body, std::vector<batch_answer>& out);

// "/v1/tx/<id>/<op>" → {id, op}; "/v1/tx/<id>" → {id, ""}. nullopt for any other path.
struct tx_path {
  std::string id;
  std::string op;
};
std::optional<tx_path> parse_tx_path(std::string_view path);

}  // namespace datashare::sidecar::participant
