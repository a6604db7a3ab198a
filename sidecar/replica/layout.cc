#include "sidecar/replica/layout.h"

#include <cstring>
#include <vector>

namespace datashare::sidecar::replica {

std::string data_key(std::string_view key) {
  std::string k;
  k.reserve(key.size() + 1);
  k.push_back(kDataPrefix);
  k.append(key);
  return k;
}

std::string offset_key(std::int32_t partition) {
  auto p = static_cast<std::uint32_t>(partition);
  std::string k(1, kOffsetPrefix);
  for (int shift = 24; shift >= 0; shift -= 8) k.push_back(static_cast<char>((p >> shift) & 0xff));
  return k;
}

std::string encode_u64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

std::optional<std::uint64_t> decode_u64(std::string_view b) {
  if (b.size() != 8) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : b) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

namespace {

void append_u64(std::string& out, std::uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out.append(b, sizeof b);
}

}  // namespace

void encode_record(std::string& out, std::uint64_t version, std::int64_t event_time_us, bool deleted,
                   std::string_view value) {
  out.clear();
  out.reserve(17 + value.size());
  append_u64(out, version);
  append_u64(out, static_cast<std::uint64_t>(event_time_us));
  out.push_back(deleted ? 1 : 0);
  out.append(value);
}

std::string encode_record(std::uint64_t version, std::int64_t event_time_us, bool deleted, std::string_view value) {
  std::string out;
  encode_record(out, version, event_time_us, deleted, value);
  return out;
}

std::optional<record> decode_record(std::string_view b) {
  if (b.size() < 17 || (b[16] != 0 && b[16] != 1)) return std::nullopt;
  record r;
  r.version = *decode_u64(b.substr(0, 8));
  r.event_time_us = static_cast<std::int64_t>(*decode_u64(b.substr(8, 8)));
  r.deleted = b[16] == 1;
  r.value = b.substr(17);
  return r;
}

std::error_code load_offsets(const store::kv& kv, std::map<std::int32_t, std::int64_t>& out) {
  std::vector<store::entry> entries;
  std::string begin(1, kOffsetPrefix), end(1, static_cast<char>(kOffsetPrefix + 1));
  if (auto ec = kv.scan(begin, end, 1 << 20, entries)) return ec;
  for (const auto& [k, v] : entries) {
    if (k.size() != 5) return store::errc::corruption;
    std::uint32_t p = 0;
    for (std::size_t i = 1; i < 5; ++i) p = (p << 8) | static_cast<unsigned char>(k[i]);
    auto off = decode_u64(v);
    if (!off) return store::errc::corruption;
    out[static_cast<std::int32_t>(p)] = static_cast<std::int64_t>(*off);
  }
  return {};
}

std::string counter_key(std::string_view name, std::int32_t partition) {
  auto p = static_cast<std::uint32_t>(partition);
  std::string k(name);
  for (int shift = 24; shift >= 0; shift -= 8) k.push_back(static_cast<char>((p >> shift) & 0xff));
  return k;
}

std::uint64_t load_counter(const store::kv& kv, std::string_view name) {
  // Every key that starts with the name: its partitions', and the single key of an older store.
  // The names are ASCII and none is a prefix of another.
  std::string end(name);
  end.back() = static_cast<char>(end.back() + 1);
  std::vector<store::entry> entries;
  if (kv.scan(name, end, 1 << 20, entries)) return 0;
  std::uint64_t sum = 0;
  for (const auto& [k, v] : entries) {
    if (k.size() == name.size() || k.size() == name.size() + 4) sum += decode_u64(v).value_or(0);
  }
  return sum;
}

std::uint64_t load_counter(const store::kv& kv, std::string_view name, std::int32_t partition) {
  std::string v;
  if (kv.get(counter_key(name, partition), v)) return 0;
  return decode_u64(v).value_or(0);
}

std::error_code migrate_counters(store::kv& kv, std::int32_t partition) {
  store::write_batch b;
  for (std::string_view name : {kAppliedCounter, kStaleCounter, kDlqCounter}) {
    std::string v;
    if (auto ec = kv.get(name, v)) {
      if (ec == store::errc::not_found) continue;
      return ec;
    }
    b.put(counter_key(name, partition), encode_u64(decode_u64(v).value_or(0) + load_counter(kv, name, partition)));
    b.del(name);
  }
  if (b.size() == 0) return {};
  return kv.write(b, true);
}

}  // namespace datashare::sidecar::replica
