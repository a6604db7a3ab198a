// A change event as any Kafka client may produce it (DESIGN.md §4): key, CloudEvents headers,
// JSON value. The replica decides it (apply, stale or poison with a reason, never a crash) and
// plans the write against a store that already holds a version of the key; the publisher's
// checks of an entity (nlohmann parse + schema) and the JSON scanner run on the same value.
//
// Input shape (seeds are written by hand):
//   line 1            the message key ("\x01" alone: no key)
//   "name=value" lines headers ("name" without '=': a header without value), up to a blank line
//   the rest          the value; no blank line at all: a tombstone (no value)
#include <cstdlib>

#include "fuzz/fixtures.h"
#include "fuzz/input.h"
#include "sidecar/event/cloudevents.h"
#include "sidecar/event/json_scan.h"
#include "sidecar/event/schema.h"
#include "sidecar/replica/applier.h"
#include "sidecar/store/memory_kv.h"

namespace {

using namespace datashare::sidecar;

const replica::applier& the_applier() {
  static const replica::applier a = [] {
    config::subscribe_spec spec;
    spec.policy = "fuzz";
    spec.product = datashare::fuzz::products();
    spec.topic = "catalog.products.v1";
    spec.group = "fuzz";
    spec.fields = {"id", "name", "price", "stock", "active", "tags", "dims"};
    spec.max_event_bytes = 4096;
    return replica::applier(spec);
  }();
  return a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace fuzz = datashare::fuzz;
  std::string_view rest = fuzz::as_text(data, size);
  kafka::message m;
  m.topic = "catalog.products.v1";
  std::string_view key = fuzz::take_until(rest, "\n");
  if (key != "\x01") m.key = std::string(key);
  bool has_value = false;
  while (!rest.empty()) {
    std::string_view line = fuzz::take_until(rest, "\n");
    if (line.empty()) {
      has_value = true;
      break;
    }
    auto eq = line.find('=');
    kafka::header h{std::string(line.substr(0, eq)), std::nullopt};
    if (eq != std::string_view::npos) h.value = std::string(line.substr(eq + 1));
    (void)event::parse_time(h.value.value_or(""));
    (void)event::parse_version(h.value.value_or(""));
    m.headers.push_back(std::move(h));
  }
  if (has_value) m.value = std::string(rest);

  const auto& applier = the_applier();
  auto d = applier.decide(m);
  if (d.kind == replica::decision::poison && d.value.empty()) std::abort();  // poison always says why

  // The same message twice, against a store holding version 5 of its key: the second is stale
  // or replayed, never applied again.
  datashare::sidecar::store::memory_kv kv;
  replica::plan seed;
  kafka::message older = m;
  older.headers.push_back({std::string(event::kVersionHeader), "5"});
  older.offset = 0;
  m.offset = 1;
  if (!applier.prepare({&older, 1}, kv, 1'000'000, seed) && !seed.batch.empty()) (void)kv.write(seed.batch, false);
  std::vector<kafka::message> batch{m, m};
  batch[1].offset = 2;
  replica::plan p;
  (void)applier.prepare(batch, kv, 2'000'000, p);
  if (p.applied > 1) std::abort();

  if (m.value) {
    std::vector<event::json_member> members;
    if (event::scan_json_object(*m.value, members) == event::json_scan_result::object) {
      for (const auto& member : members) (void)event::unescape_json_string(member.name);
    }
    auto body = nlohmann::json::parse(*m.value, nullptr, /*allow_exceptions=*/false);
    if (body.is_object()) (void)event::check_entity(body, datashare::fuzz::products(), event::unknown_fields::reject);
  }
  if (m.key) (void)event::is_valid_utf8(*m.key);
  return 0;
}
