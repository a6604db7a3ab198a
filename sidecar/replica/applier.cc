#include "sidecar/replica/applier.h"

#include <map>

#include "sidecar/event/cloudevents.h"
#include "sidecar/event/json_scan.h"
#include "sidecar/event/schema.h"
#include "sidecar/replica/layout.h"

namespace datashare::sidecar::replica {

applier::applier(const config::subscribe_spec& spec)
    : product_(spec.product), fields_(spec.fields), max_event_bytes_(spec.max_event_bytes) {
  for (const auto& f : fields_) quoted_fields_.push_back(event::quote_json_string(f));
}

namespace {

bool kind_matches(event::json_kind k, config::field_type t) {
  using config::field_type;
  switch (t) {
    case field_type::string:
      return k == event::json_kind::string;
    case field_type::number:
      return k == event::json_kind::number || k == event::json_kind::integer;
    case field_type::integer:
      return k == event::json_kind::integer;
    case field_type::boolean:
      return k == event::json_kind::boolean;
    case field_type::object:
      return k == event::json_kind::object;
    case field_type::array:
      return k == event::json_kind::array;
  }
  return false;
}

const char* kind_name(event::json_kind k) {
  switch (k) {
    case event::json_kind::string:
      return "string";
    case event::json_kind::integer:
      return "integer";
    case event::json_kind::number:
      return "number";
    case event::json_kind::boolean:
      return "boolean";
    case event::json_kind::null:
      return "null";
    case event::json_kind::object:
      return "object";
    case event::json_kind::array:
      return "array";
  }
  return "?";
}

void poison_into(decision& d, std::string reason) {
  d.kind = decision::poison;
  d.value = std::move(reason);
}

}  // namespace

decision applier::decide(const kafka::message& m) const {
  decision d;
  decide(m, d);
  return d;
}

void applier::decide(const kafka::message& m, decision& d) const {
  d.version = 0;
  d.event_time_us = 0;
  d.value.clear();
  auto poisoned = [&d](std::string reason) { poison_into(d, std::move(reason)); };
  if (!m.key || m.key->empty()) return poisoned("key missing");
  if (!event::is_valid_utf8(*m.key)) return poisoned("key is not valid UTF-8");
  std::size_t size = m.key->size() + (m.value ? m.value->size() : 0);
  if (size > max_event_bytes_) {
    return poisoned("oversized: " + std::to_string(size) + " bytes > maxEventBytes " +
                    std::to_string(max_event_bytes_));
  }
  auto version_header = m.header_value(event::kVersionHeader);
  if (!version_header) return poisoned("missing datashare_version header");
  auto version = event::parse_version(*version_header);
  if (!version || *version == 0) return poisoned("datashare_version is not a positive integer");
  d.version = *version;
  auto time_header = m.header_value(event::kTimeHeader);
  std::optional<std::int64_t> t = time_header ? event::parse_time(*time_header) : std::nullopt;
  if (time_header && !t) return poisoned("ce_time is not an RFC 3339 time");
  d.event_time_us = t ? *t : m.timestamp_ms * 1000;
  auto type = m.header_value(event::kTypeHeader);
  bool typed_deleted = type && type->size() > 8 && type->substr(type->size() - 8) == ".deleted";
  if (!m.value) {
    if (type && !typed_deleted) return poisoned("null value (tombstone) but ce_type is " + std::string(*type));
    d.kind = decision::remove;
    return;
  }
  if (typed_deleted) return poisoned("ce_type is " + std::string(*type) + " but the value is not null");
  // One pass over the value, no document: validate, check the product's field types, project.
  thread_local std::vector<event::json_member> members;
  members.clear();
  switch (event::scan_json_object(*m.value, members)) {
    case event::json_scan_result::invalid:
      return poisoned("value is not JSON");
    case event::json_scan_result::not_an_object:
      return poisoned("value is not a JSON object");
    case event::json_scan_result::object:
      break;
  }
  std::string unescaped;
  for (const auto& member : members) {
    std::string_view name = member.name;
    if (member.name_has_escapes) {
      unescaped = event::unescape_json_string(member.name);
      name = unescaped;
    }
    const config::field* f = product_.find(name);
    if (f == nullptr || member.kind == event::json_kind::null) continue;  // unknown fields: ignored here
    if (!kind_matches(member.kind, f->type)) {
      return poisoned("field \"" + std::string(name) + "\": expected " + std::string(config::to_string(f->type)) +
                      ", got " + kind_name(member.kind));
    }
    if (f->name == product_.key && member.kind == event::json_kind::string) {
      std::string_view body = member.value.substr(1, member.value.size() - 2);
      bool escaped = body.find('\\') != std::string_view::npos;
      if (escaped ? event::unescape_json_string(body) != *m.key : body != *m.key) {
        std::string decoded = escaped ? event::unescape_json_string(body) : std::string(body);
        return poisoned("key field \"" + product_.key + "\" is \"" + decoded + "\" but the message key is \"" + *m.key +
                        "\"");
      }
    }
    // An integer key: the number the message key spells (event::key_field_value, the rule the
    // gateway and the publisher hold bodies to).
    // (A discarded value compares unequal to nothing: spelled out.)
    if (f->name == product_.key && member.kind == event::json_kind::integer) {
      auto want = event::key_field_value(f->type, *m.key);
      if (want.is_discarded() || !(want == nlohmann::json::parse(member.value, nullptr, false))) {
        return poisoned("key field \"" + product_.key + "\" is " + std::string(member.value) +
                        " but the message key is \"" + *m.key + "\"");
      }
    }
  }
  // The policy's fields in the policy's order, each with the value the event carried (the last
  // one when a name repeats, as JSON parsers do).
  d.value.reserve(m.value->size());
  d.value.push_back('{');
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    const event::json_member* found = event::last_member(members, fields_[i]);
    if (found == nullptr) continue;
    if (d.value.size() > 1) d.value.push_back(',');
    d.value += quoted_fields_[i];
    d.value.push_back(':');
    d.value.append(found->value);
  }
  d.value.push_back('}');
  d.kind = decision::upsert;
}

void version_table::reset(std::size_t keys) {
  std::size_t want = 16;
  while (2 * want < 3 * keys) want <<= 1;  // at most 2/3 full
  if (++generation_ == 0 || want > slots_.size()) {
    slots_.assign(std::max(want, slots_.size()), slot{});
    generation_ = 1;
  }
  mask_ = slots_.size() - 1;
  size_ = 0;
}

version_table::slot& version_table::find_or_add(std::string_view key, bool& added) {
  const std::size_t hash = std::hash<std::string_view>{}(key);
  for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
    slot& e = slots_[i];
    if (e.generation != generation_) {
      e = {key.data(), static_cast<std::uint32_t>(key.size()), generation_, 0};
      added = true;
      ++size_;
      return e;
    }
    if (e.key() == key) {
      added = false;
      return e;
    }
  }
}

std::uint64_t version_table::find(std::string_view key) const {
  if (size_ == 0) return 0;
  const std::size_t hash = std::hash<std::string_view>{}(key);
  for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
    const slot& e = slots_[i];
    if (e.generation != generation_) return 0;
    if (e.key() == key) return e.version;
  }
}

namespace {

// What prepare() needs per batch, kept per thread so that its buffers serve every batch.
struct scratch {
  std::vector<decision> decisions;
  std::vector<version_table::slot*> slot_of;  // per message: its key's entry (null: replayed or poison)
  std::vector<char> decided;                  // per message: not replayed
  version_table versions;
  std::vector<std::string> lookup;  // data keys whose stored version is read
  std::vector<version_table::slot*> lookup_slot;
  std::vector<std::string> values;
  std::vector<std::error_code> errors;
  std::string key, record;
};

}  // namespace

std::error_code applier::prepare(std::span<const kafka::message> messages, const store::kv& kv, std::int64_t now_us,
                                 plan& out, std::span<const plan* const> in_flight,
                                 const std::map<std::int32_t, totals>* before, written_keys* fresh) const {
  thread_local scratch s;
  out.clear();
  // Pass 1: skip what was applied before (below the stored offset), decide the rest, and gather
  // the keys whose stored version is needed, to read them in one multi_get.
  std::map<std::int32_t, std::int64_t> next_offsets;
  if (s.decisions.size() < messages.size()) s.decisions.resize(messages.size());
  s.slot_of.assign(messages.size(), nullptr);
  s.decided.assign(messages.size(), 0);
  s.versions.reset(messages.size());
  s.lookup_slot.clear();
  std::size_t lookups = 0;
  std::string stored;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    auto [pos, first_seen] = next_offsets.try_emplace(m.partition, 0);
    if (first_seen) {
      // The stored position: a message below it was applied before (a redelivery after a seek
      // that went wrong, or a test's replay) and must not move the offset back.
      if (auto ec = kv.get(offset_key(m.partition), stored); !ec) {
        pos->second = static_cast<std::int64_t>(decode_u64(stored).value_or(0));
      } else if (ec != store::errc::not_found) {
        return ec;
      }
    }
    if (m.offset < pos->second) {
      ++out.replayed;
      continue;
    }
    pos->second = m.offset + 1;
    decision& d = s.decisions[i];
    decide(m, d);
    s.decided[i] = 1;
    if (d.kind == decision::poison) continue;
    bool added = false;
    s.slot_of[i] = &s.versions.find_or_add(*m.key, added);
    if (added && (fresh == nullptr || fresh->test_and_add(*m.key))) {
      if (lookups == s.lookup.size()) s.lookup.emplace_back();
      s.lookup[lookups].assign(1, kDataPrefix);
      s.lookup[lookups].append(*m.key);
      ++lookups;
      s.lookup_slot.push_back(s.slot_of[i]);
    }
  }
  s.lookup.resize(lookups);
  if (lookups != 0) kv.multi_get(s.lookup, s.values, s.errors);
  for (std::size_t i = 0; i < lookups; ++i) {
    if (s.errors[i] == store::errc::not_found) continue;
    if (s.errors[i]) return s.errors[i];
    auto r = decode_record(s.values[i]);
    if (!r) return store::errc::corruption;
    s.lookup_slot[i]->version = r->version;
  }
  for (const plan* earlier : in_flight) {
    if (earlier == nullptr || earlier->written.empty()) continue;
    // Written by a batch in flight, whether or not the store shows it yet: versions only grow,
    // so the larger of the two is the stored one.
    for (std::size_t i = 0; i < lookups; ++i) {
      auto v = earlier->written.find(std::string_view(s.lookup[i]).substr(1));
      s.lookup_slot[i]->version = std::max(s.lookup_slot[i]->version, v);
    }
  }
  // Pass 2, in consumption order: the version check against the store and the batch so far.
  totals* counted = nullptr;  // the message's partition's (messages come in runs of a partition)
  std::int32_t counted_partition = -1;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (s.decided[i] == 0) continue;
    const auto& m = messages[i];
    decision& d = s.decisions[i];
    if (counted == nullptr || m.partition != counted_partition) {
      counted = &out.counted[m.partition];
      counted_partition = m.partition;
    }
    out.newest_event_time_us = std::max(out.newest_event_time_us, d.event_time_us);
    if (d.kind == decision::poison) {
      out.poison.emplace_back(&m, std::move(d.value));
      ++counted->dlq;
      continue;
    }
    std::uint64_t& current = s.slot_of[i]->version;
    if (d.version <= current) {
      ++out.stale;
      ++counted->stale;
      continue;
    }
    current = d.version;
    s.key.assign(1, kDataPrefix);
    s.key.append(*m.key);
    encode_record(s.record, d.version, d.event_time_us, d.kind == decision::remove, d.value);
    out.batch.put(s.key, s.record);
    ++out.applied;
    ++counted->applied;
    out.propagation_us.push_back(now_us - d.event_time_us);
  }
  for (const auto& [partition, offset] : next_offsets) {
    out.batch.put(offset_key(partition), encode_u64(static_cast<std::uint64_t>(offset)));
  }
  // Each partition's counters, in the same batch as the data and the offsets they account for.
  for (const auto& [partition, delta] : out.counted) {
    totals base;
    if (before != nullptr) {
      if (auto it = before->find(partition); it != before->end()) base = it->second;
    } else {
      base = {load_counter(kv, kAppliedCounter, partition), load_counter(kv, kStaleCounter, partition),
              load_counter(kv, kDlqCounter, partition)};
    }
    if (delta.applied != 0) {
      out.batch.put(counter_key(kAppliedCounter, partition), encode_u64(base.applied + delta.applied));
    }
    if (delta.stale != 0) out.batch.put(counter_key(kStaleCounter, partition), encode_u64(base.stale + delta.stale));
    if (delta.dlq != 0) out.batch.put(counter_key(kDlqCounter, partition), encode_u64(base.dlq + delta.dlq));
  }
  // The versions this batch writes, for the next batch to see while this one is written. The
  // batch's bytes are complete, so views into them stay valid until the plan is cleared.
  out.written.reset(out.applied);
  for (std::size_t i = 0; i < out.batch.size(); ++i) {
    auto op = out.batch[i];
    if (op.key.empty() || op.key[0] != kDataPrefix) continue;
    bool added = false;
    out.written.find_or_add(op.key.substr(1), added).version = decode_u64(op.value.substr(0, 8)).value_or(0);
  }
  return {};
}

}  // namespace datashare::sidecar::replica
