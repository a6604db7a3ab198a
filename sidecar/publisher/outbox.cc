#include "sidecar/publisher/outbox.h"

namespace datashare::sidecar::publisher {
namespace {

void put_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

bool get_u64(std::string_view& in, std::uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  in.remove_prefix(8);
  return true;
}

bool get_bytes(std::string_view& in, std::size_t n, std::string& out) {
  if (in.size() < n) return false;
  out.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

}  // namespace

std::string entry_key(std::uint64_t sequence) {
  std::string k(1, kEntryPrefix);
  put_u64(k, sequence);
  return k;
}

std::optional<std::uint64_t> sequence_of(std::string_view k) {
  if (k.size() != 9 || k[0] != kEntryPrefix) return std::nullopt;
  k.remove_prefix(1);
  std::uint64_t v = 0;
  get_u64(k, v);
  return v;
}

std::string encode_entry(const entry& e) {
  std::string out;
  out.reserve(32 + e.key.size() + e.id.size() + e.value.size());
  put_u64(out, e.version);
  put_u64(out, static_cast<std::uint64_t>(e.time_us));
  out.push_back(e.deleted ? 1 : 0);
  put_u64(out, e.key.size());
  out += e.key;
  put_u64(out, e.id.size());
  out += e.id;
  out += e.value;
  return out;
}

std::optional<entry> decode_entry(std::string_view in) {
  entry e;
  std::uint64_t t = 0, n = 0;
  if (!get_u64(in, e.version) || !get_u64(in, t) || in.empty()) return std::nullopt;
  e.time_us = static_cast<std::int64_t>(t);
  if (in[0] != 0 && in[0] != 1) return std::nullopt;
  e.deleted = in[0] == 1;
  in.remove_prefix(1);
  if (!get_u64(in, n) || !get_bytes(in, n, e.key) || !get_u64(in, n) || !get_bytes(in, n, e.id)) return std::nullopt;
  e.value.assign(in);
  return e;
}

}  // namespace datashare::sidecar::publisher
