#include "sidecar/participant/protocol.h"

#include <charconv>
#include <nlohmann/json.hpp>

namespace datashare::sidecar::participant {

bool is_valid_tx_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string encode_prepare(const prepare_request& r) {
  // Written out rather than built as a JSON document: the value is already JSON object text (the
  // gateway's check() wrote it), so it goes in as it is instead of being parsed and dumped again
  // for every participant of every transaction.
  auto quoted = [](const std::string& s) { return nlohmann::json(s).dump(); };
  std::string out;
  out.reserve(96 + r.product.size() + r.key.size() + r.value.size() + 48 * r.peers.size());
  out.append(R"({"product":)").append(quoted(r.product));
  out.append(R"(,"key":)").append(quoted(r.key));
  out.append(r.deleted ? R"(,"op":"delete")" : R"(,"op":"put")");
  out.append(R"(,"version":)").append(std::to_string(r.version));
  out.append(R"(,"peers":[)");
  for (std::size_t i = 0; i < r.peers.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(quoted(r.peers[i]));
  }
  out.append(R"(],"value":)").append(r.deleted ? std::string_view("null") : std::string_view(r.value));
  out.push_back('}');
  return out;
}

std::string decode_prepare(std::string_view body, prepare_request& out) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "the body must be a JSON object";
  auto str = [&](const char* name, std::string& to) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return false;
    to = it->get<std::string>();
    return true;
  };
  if (!str("product", out.product)) return "product: a non-empty string is required";
  if (!str("key", out.key)) return "key: a non-empty string is required";
  std::string op;
  if (!str("op", op) || (op != "put" && op != "delete")) return "op: put or delete";
  out.deleted = op == "delete";
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_unsigned() || v->get<std::uint64_t>() == 0)
    return "version: a positive integer is required";
  out.version = v->get<std::uint64_t>();
  auto value = j.find("value");
  if (out.deleted) {
    out.value.clear();
  } else {
    if (value == j.end() || !value->is_object()) return "value: a JSON object is required with op put";
    out.value = value->dump();
  }
  out.peers.clear();
  if (auto p = j.find("peers"); p != j.end()) {
    if (!p->is_array()) return "peers: a list of URLs";
    for (const auto& u : *p) {
      if (!u.is_string()) return "peers: a list of URLs";
      out.peers.push_back(u.get<std::string>());
    }
  }
  return "";
}

std::string encode_product(std::string_view product) {
  return nlohmann::json{{"product", product}}.dump();
}

std::optional<std::string> decode_product(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto it = j.find("product");
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::string read_member(std::string_view body, const char* member) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "";
  auto it = j.find(member);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

namespace {

// One frame's header: `<a> <b> <length>\n` (two words) or `<a> <length>\n` (one word), then
// the body and a newline. Advances `in` past the frame.
bool next_frame(std::string_view& in, std::string_view* words, int n, std::string_view& body) {
  auto eol = in.find('\n');
  if (eol == std::string_view::npos || eol > 200) return false;
  std::string_view head = in.substr(0, eol);
  for (int i = 0; i < n; ++i) {
    auto sp = head.find(' ');
    if (sp == std::string_view::npos || sp == 0) return false;
    words[i] = head.substr(0, sp);
    head.remove_prefix(sp + 1);
  }
  std::size_t len = 0;
  if (head.empty() || (head.size() > 1 && head[0] == '0')) return false;  // one spelling per length
  auto [ptr, ec] = std::from_chars(head.data(), head.data() + head.size(), len);
  if (ec != std::errc() || ptr != head.data() + head.size()) return false;
  in.remove_prefix(eol + 1);
  if (in.size() < len + 1 || in[len] != '\n') return false;
  body = in.substr(0, len);
  in.remove_prefix(len + 1);
  return true;
}

void append_frame_end(std::string& to, std::string_view body) {
  to.append(std::to_string(body.size())).append(1, '\n').append(body).append(1, '\n');
}

}  // namespace

void append_batch_message(std::string& to, std::string_view op, std::string_view tx, std::string_view body) {
  to.append(op).append(1, ' ').append(tx).append(1, ' ');
  append_frame_end(to, body);
}

std::string decode_batch(std::string_view body, std::vector<batch_message>& out) {
  out.clear();
  while (!body.empty()) {
    std::string_view words[2], b;
    if (!next_frame(body, words, 2, b)) return "message " + std::to_string(out.size() + 1) + ": broken framing";
    if (words[0] != "prepare" && words[0] != "commit" && words[0] != "abort")
      return "message " + std::to_string(out.size() + 1) + ": op must be prepare, commit or abort";
    if (!is_valid_tx_id(words[1])) return "message " + std::to_string(out.size() + 1) + ": invalid transaction id";
    if (out.size() == kMaxBatch) return "more than " + std::to_string(kMaxBatch) + " messages";
    out.push_back({std::string(words[0]), std::string(words[1]), std::string(b)});
  }
  if (out.empty()) return "no message";
  return "";
}

void append_batch_answer(std::string& to, unsigned status, std::string_view body) {
  to.append(std::to_string(status)).append(1, ' ');
  append_frame_end(to, body);
}

std::string decode_batch_answers(std::string_view body, std::vector<batch_answer>& out) {
  out.clear();
  while (!body.empty()) {
    std::string_view word, b;
    if (!next_frame(body, &word, 1, b)) return "answer " + std::to_string(out.size() + 1) + ": broken framing";
    unsigned status = 0;
    auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), status);
    if (ec != std::errc() || ptr != word.data() + word.size() || status < 100 || status > 599 || word[0] == '0')
      return "answer " + std::to_string(out.size() + 1) + ": bad status";
    out.push_back({status, std::string(b)});
  }
  return "";
}

std::optional<tx_path> parse_tx_path(std::string_view path) {
  constexpr std::string_view kPrefix = "/v1/tx/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  path.remove_prefix(kPrefix.size());
  tx_path out;
  auto slash = path.find('/');
  out.id = std::string(path.substr(0, slash));
  if (slash != std::string_view::npos) {
    out.op = std::string(path.substr(slash + 1));
    if (out.op.empty()) return std::nullopt;
  }
  if (!is_valid_tx_id(out.id)) return std::nullopt;
  return out;
}

}  // namespace datashare::sidecar::participant
