#include "sidecar/publisher/publisher.h"

#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "sidecar/kafka/fake_broker.h"
#include "sidecar/store/memory_kv.h"

namespace datashare::sidecar::publisher {
namespace {

config::product_schema products() {
  config::product_schema p;
  p.name = "products";
  p.namespace_name = "catalog";
  p.key = "id";
  p.fields = {{"id", config::field_type::string, false},
              {"name", config::field_type::string, false},
              {"price", config::field_type::number, false},
              {"supplierEmail", config::field_type::string, true}};
  return p;
}

TEST(CheckChangeTest, ValidatesDropsRestrictedAndFillsTheKey) {
  auto p = products();
  std::string v;
  EXPECT_EQ(check_change(p, "a", R"({"name":"A","price":3,"supplierEmail":"x@y"})", v), "");
  EXPECT_EQ(nlohmann::json::parse(v), nlohmann::json::parse(R"({"id":"a","name":"A","price":3})"));
  EXPECT_EQ(check_change(p, "a", R"({"id":"a"})", v), "");
  EXPECT_EQ(check_change(p, "a", "nope", v), "body is not JSON");
  EXPECT_EQ(check_change(p, "a", "[]", v), "expected a JSON object, got array");
  EXPECT_EQ(check_change(p, "a", R"({"ratng":5})", v),
            R"(unknown field "ratng" (product fields: id, name, price, supplierEmail))");
  EXPECT_EQ(check_change(p, "a", R"({"price":"3"})", v), R"(field "price": expected number, got string)");
  EXPECT_EQ(check_change(p, "a", R"({"id":"b"})", v), R"(key field "id" is "b" but the path says "a")");
}

TEST(CheckChangeTest, AnIntegerKeyIsTheNumberThePathSpells) {
  auto p = products();
  p.fields[0].type = config::field_type::integer;
  std::string v;
  EXPECT_EQ(check_change(p, "42", R"({"id":42,"name":"A"})", v), "");
  EXPECT_EQ(v, R"({"id":42,"name":"A"})");
  EXPECT_EQ(check_change(p, "-7", R"({"name":"A"})", v), "");
  EXPECT_EQ(v, R"({"id":-7,"name":"A"})") << "an absent key is filled in as the number";
  EXPECT_EQ(check_change(p, "42", R"({"id":41})", v), R"(key field "id" is "41" but the path says "42")");
  EXPECT_EQ(check_change(p, "042", R"({"id":42})", v), R"(the key "042" is not an integer (the product's key is))");
  EXPECT_EQ(check_change(p, "abc", R"({"name":"A"})", v), R"(the key "abc" is not an integer (the product's key is))");
  EXPECT_EQ(check_change(p, "4.2e1", R"({"name":"A"})", v),
            R"(the key "4.2e1" is not an integer (the product's key is))");
}

class publisher_test : public ::testing::Test {
 protected:
  void SetUp() override { broker_.create_topic("catalog.products.v1", 3); }

  std::unique_ptr<publisher> make(std::uint64_t max_entries = 1000) {
    config::publish_spec s;
    s.product = products();
    s.topic = "catalog.products.v1";
    s.outbox.max_entries = max_entries;
    publisher_options o;
    o.rewind_backoff = std::chrono::milliseconds(1);
    o.in_flight_window = 50;
    auto p = std::make_unique<publisher>(s, std::make_unique<forwarding_kv>(kv_), *factory_,
                                         metrics_.publisher("products"), o);
    std::string error;
    EXPECT_FALSE(p->start(error)) << error;
    return p;
  }

  static publish_result submit(publisher& p, const std::string& key, std::optional<std::string> body) {
    std::promise<publish_result> done;
    auto f = done.get_future();
    p.submit(key, std::move(body), [&done](publish_result r) { done.set_value(std::move(r)); });
    return f.get();
  }

  // Waits (bounded) until the outbox is empty.
  static bool drained(publisher& p) {
    for (int i = 0; i < 500 && p.depth() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return p.depth() == 0;
  }

  // Per key, the versions in topic order, and the last value.
  std::map<std::string, std::vector<std::uint64_t>> versions_by_key() {
    std::map<std::string, std::vector<std::uint64_t>> out;
    for (const auto& m : broker_.read_all("catalog.products.v1")) {
      out[*m.key].push_back(std::stoull(std::string(*m.header_value("datashare_version"))));
    }
    return out;
  }

  class forwarding_kv final : public store::kv {
   public:
    explicit forwarding_kv(store::memory_kv& target) : kv_(target) {}
    std::error_code get(std::string_view k, std::string& v) const override { return kv_.get(k, v); }
    std::error_code write(const store::write_batch& b, bool sync) override { return kv_.write(b, sync); }
    std::error_code scan(std::string_view b, std::string_view e, std::size_t l,
                         std::vector<store::entry>& o) const override {
      return kv_.scan(b, e, l, o);
    }

   private:
    store::memory_kv& kv_;
  };

  kafka::fake_broker broker_;
  std::unique_ptr<kafka::client_factory> factory_ = broker_.factory();
  metrics::registry metrics_;
  store::memory_kv kv_;
};

TEST_F(publisher_test, AcceptsAfterAnFsyncAndPublishesTheEvent) {
  auto p = make();
  auto r = submit(*p, "sku-1", R"({"name":"Lamp","price":12.5,"supplierEmail":"s@x"})");
  EXPECT_EQ(r.status, 202u);
  EXPECT_GT(r.version, 0u);
  EXPECT_GE(kv_.synced_writes(), 1u);
  ASSERT_TRUE(drained(*p));
  auto msgs = broker_.read_all("catalog.products.v1");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(*msgs[0].key, "sku-1");
  EXPECT_EQ(nlohmann::json::parse(*msgs[0].value),
            nlohmann::json::parse(R"({"id":"sku-1","name":"Lamp","price":12.5})"));
  EXPECT_EQ(*msgs[0].header_value("ce_type"), "io.datashare.products.updated");
  EXPECT_EQ(*msgs[0].header_value("ce_source"), "/namespaces/catalog/dataproducts/products");
  EXPECT_EQ(*msgs[0].header_value("ce_subject"), "sku-1");
  EXPECT_EQ(*msgs[0].header_value("datashare_version"), std::to_string(r.version));
  EXPECT_EQ(msgs[0].header_value("ce_id")->size(), 36u);

  auto d = submit(*p, "sku-1", std::nullopt);
  EXPECT_EQ(d.status, 202u);
  EXPECT_GT(d.version, r.version);
  ASSERT_TRUE(drained(*p));
  msgs = broker_.read_all("catalog.products.v1");
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_FALSE(msgs[1].value);
  EXPECT_EQ(*msgs[1].header_value("ce_type"), "io.datashare.products.deleted");
}

// The owner participant's `committed` record rides with its outbox entry: in the same synced
// batch when the change is accepted, not written at all when it is refused.
TEST_F(publisher_test, WritesBroughtBySubmitGoInTheEntrysBatch) {
  auto p = make();
  auto with = [](const std::string& k) {
    store::write_batch b;
    b.put(k, "record");
    b.del("tgone");
    return b;
  };
  ASSERT_FALSE(kv_.write(with("tgone"), true));
  auto synced = kv_.synced_writes();
  std::promise<publish_result> done;
  p->submit(
      "sku-1", R"({"name":"Lamp"})", [&done](publish_result r) { done.set_value(std::move(r)); }, 0, with("ttx1"));
  auto r = done.get_future().get();
  EXPECT_EQ(r.status, 202u);
  EXPECT_EQ(kv_.synced_writes(), synced + 1) << "one synced batch for the entry and the record";
  std::string v;
  EXPECT_FALSE(kv_.get("ttx1", v));
  EXPECT_EQ(v, "record");
  EXPECT_EQ(kv_.get("tgone", v), store::errc::not_found);

  std::promise<publish_result> refused;
  p->submit(
      "sku-2", R"({"ratng":5})", [&refused](publish_result x) { refused.set_value(std::move(x)); }, 0, with("ttx2"));
  EXPECT_EQ(refused.get_future().get().status, 400u);
  EXPECT_EQ(kv_.get("ttx2", v), store::errc::not_found);

  ASSERT_TRUE(drained(*p));  // the drain's own write (the delivered entry deleted) is done
  kv_.fail_next_writes(1);
  std::promise<publish_result> failed;
  p->submit(
      "sku-3", R"({"name":"Desk"})", [&failed](publish_result x) { failed.set_value(std::move(x)); }, 0, with("ttx3"));
  EXPECT_EQ(failed.get_future().get().status, 500u);
  EXPECT_EQ(kv_.get("ttx3", v), store::errc::not_found);
}

// write(): the owner participant's records through the outbox's writer, in the order queued,
// synced only when asked (or when the group holds a change).
TEST_F(publisher_test, WritesAloneGoThroughTheWriterInOrder) {
  auto p = make();
  auto synced = kv_.synced_writes();
  std::promise<std::error_code> first;
  store::write_batch a;
  a.put("tx", "prepared");
  p->write(
      std::move(a), [&first](std::error_code ec) { first.set_value(ec); }, false);
  EXPECT_FALSE(first.get_future().get());
  EXPECT_EQ(kv_.synced_writes(), synced) << "not synced: nothing asked";
  std::promise<std::error_code> second;
  store::write_batch b;
  b.put("tx", "committed");
  p->write(
      std::move(b), [&second](std::error_code ec) { second.set_value(ec); }, true);
  EXPECT_FALSE(second.get_future().get());
  EXPECT_EQ(kv_.synced_writes(), synced + 1);
  std::string v;
  EXPECT_FALSE(kv_.get("tx", v));
  EXPECT_EQ(v, "committed");
  EXPECT_EQ(p->depth(), 0u) << "no change in the outbox";
  p->stop();
  std::promise<std::error_code> late;
  p->write(
      {}, [&late](std::error_code ec) { late.set_value(ec); }, true);
  EXPECT_TRUE(late.get_future().get()) << "after stop: refused, never left waiting";
}

TEST_F(publisher_test, RejectsInvalidBodiesWithoutStoringThem) {
  auto p = make();
  auto r = submit(*p, "a", R"({"ratng":5})");
  EXPECT_EQ(r.status, 400u);
  EXPECT_NE(r.body.find("unknown field"), std::string::npos);
  EXPECT_EQ(kv_.writes(), 0u);
}

TEST_F(publisher_test, OutageFillsTheOutboxThen503ThenDrainsInOrder) {
  auto p = make(/*max_entries=*/100);
  broker_.set_down(true);
  std::map<std::string, std::uint64_t> accepted_last;
  int rejected = 0;
  for (int i = 0; i < 150; ++i) {
    std::string key = "k" + std::to_string(i % 7);
    auto r = submit(*p, key, R"({"name":"v)" + std::to_string(i) + R"("})");
    if (r.status == 202) {
      accepted_last[key] = r.version;
    } else {
      EXPECT_EQ(r.status, 503u);
      EXPECT_EQ(r.retry_after_s, 1);
      ++rejected;
    }
  }
  EXPECT_EQ(rejected, 50);
  EXPECT_EQ(p->depth(), 100u);
  broker_.set_down(false);
  ASSERT_TRUE(drained(*p));
  auto by_key = versions_by_key();
  std::size_t total = 0;
  for (const auto& [key, versions] : by_key) {
    EXPECT_TRUE(std::is_sorted(versions.begin(), versions.end())) << key;
    EXPECT_EQ(versions.back(), accepted_last[key]) << key;
    total += versions.size();
  }
  EXPECT_EQ(total, 100u);
}

TEST_F(publisher_test, FailedDeliveriesAreSentAgainAndTheNewestStateEndsLast) {
  auto p = make();
  broker_.set_fail_deliveries(true);
  std::map<std::string, std::uint64_t> last;
  for (int i = 0; i < 40; ++i) {
    std::string key = "k" + std::to_string(i % 5);
    last[key] = submit(*p, key, "{}").version;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(p->depth(), 40u);
  broker_.set_fail_deliveries(false);
  ASSERT_TRUE(drained(*p));
  for (const auto& [key, versions] : versions_by_key()) EXPECT_EQ(versions.back(), last[key]) << key;
}

TEST_F(publisher_test, ARestartSendsWhatThePreviousRunLeftInTheOutbox) {
  std::uint64_t v = 0;
  {
    auto p = make();
    broker_.set_down(true);
    for (int i = 0; i < 10; ++i) v = submit(*p, "k" + std::to_string(i), "{}").version;
  }
  auto p = make();
  EXPECT_EQ(p->depth(), 10u);  // still down: nothing can have been delivered yet
  broker_.set_down(false);
  ASSERT_TRUE(drained(*p));
  EXPECT_EQ(broker_.read_all("catalog.products.v1").size(), 10u);
  // Versions keep growing across the restart.
  EXPECT_GT(submit(*p, "k0", "{}").version, v);
}

// An outbox entry that cannot be decoded cannot be sent. It is moved aside, bytes intact, and the
// changes after it are published and the outbox drains; before, it was skipped in every round
// and held the outbox's depth up until the outbox was full and every write a 503.
TEST_F(publisher_test, AnUnreadableOutboxEntryIsMovedAsideAndTheRestIsPublished) {
  {
    auto p = make();
    broker_.set_down(true);
    for (int i = 0; i < 3; ++i) ASSERT_EQ(submit(*p, "k" + std::to_string(i), "{}").status, 202u);
  }
  store::write_batch b;
  b.put(entry_key(1), "not an entry");
  ASSERT_FALSE(kv_.write(b, true));
  auto p = make();
  EXPECT_EQ(p->depth(), 3u);
  broker_.set_down(false);
  ASSERT_TRUE(drained(*p));
  std::vector<std::string> keys;
  for (const auto& m : broker_.read_all("catalog.products.v1")) keys.push_back(*m.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"k0", "k2"}));
  std::string aside;
  ASSERT_FALSE(kv_.get(std::string(1, kQuarantinePrefix) + entry_key(1).substr(1), aside));
  EXPECT_EQ(aside, "not an entry");
  std::string gone;
  EXPECT_EQ(kv_.get(entry_key(1), gone), store::errc::not_found);
  EXPECT_EQ(submit(*p, "k3", "{}").status, 202u);
  ASSERT_TRUE(drained(*p));
}

// Two gateway transactions on different keys reach the owner out of version order: each event
// carries the version the gateway answered and the copies hold (a global floor renumbered a).
TEST_F(publisher_test, AGivenVersionIsKeptPerKeyNeverRenumbered) {
  auto p = make();
  auto submit_at = [&](const std::string& key, std::uint64_t version, store::write_batch with = {}) {
    std::promise<publish_result> done;
    auto f = done.get_future();
    p->submit(
        key, "{}", [&done](publish_result r) { done.set_value(std::move(r)); }, version, std::move(with));
    return f.get();
  };
  EXPECT_EQ(submit_at("b", 200).version, 200u);
  EXPECT_EQ(submit_at("a", 150).version, 150u);
  EXPECT_EQ(submit_at("a", 150).status, 202u) << "the same transaction's publish again";
  // Below the key's own floor: refused, and nothing of it written.
  store::write_batch with;
  with.put("tmine", "x");
  auto r = submit_at("b", 199, std::move(with));
  EXPECT_EQ(r.status, 409u) << r.body;
  EXPECT_NE(r.body.find("never renumbered"), std::string::npos) << r.body;
  EXPECT_EQ(metrics_.publisher("products").below_floor->Value(), 1.0);
  EXPECT_EQ(metrics_.publisher("products").held->Value(), 0.0);
  std::string v;
  EXPECT_EQ(kv_.get("tmine", v), store::errc::not_found);
  // The outbox's own clock stays above every key's floor.
  EXPECT_GT(submit(*p, "a", "{}").version, 200u);
  ASSERT_TRUE(drained(*p));
  auto by_key = versions_by_key();
  EXPECT_EQ(by_key["b"], std::vector<std::uint64_t>{200});
  ASSERT_EQ(by_key["a"].size(), 3u);
  EXPECT_EQ(by_key["a"][0], 150u);
  EXPECT_EQ(by_key["a"][1], 150u);
}

// A direct write (no version: the owner app's PUT or DELETE) of a key a gateway transaction
// holds is refused, 409 naming the transaction, and raises no floor; the transaction's own
// publish (with its version) and other keys go through.
TEST_F(publisher_test, ADirectWriteOfAKeyAGatewayTransactionHoldsIsRefused) {
  auto p = make();
  std::mutex mu;
  std::map<std::string, std::string> held{{"a", "tx-1"}};
  p->set_key_holder([&](const std::string& key) {
    std::lock_guard lock(mu);
    auto it = held.find(key);
    return it == held.end() ? std::string() : it->second;
  });
  auto r = submit(*p, "a", R"({"name":"direct"})");
  EXPECT_EQ(r.status, 409u) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["transaction"], "tx-1") << r.body;
  EXPECT_GT(r.retry_after_s, 0);
  std::promise<publish_result> deleted;
  p->submit("a", std::nullopt, [&](publish_result d) { deleted.set_value(std::move(d)); });
  EXPECT_EQ(deleted.get_future().get().status, 409u) << "a DELETE too";
  EXPECT_EQ(p->version_floor("a"), 0u) << "nothing written";
  // Counted apart from the other results, for an alert on owners writing around the gateway.
  auto probe = metrics_.publisher("products");
  EXPECT_EQ(probe.held->Value(), 2.0);
  EXPECT_EQ(probe.below_floor->Value(), 0.0);
  EXPECT_EQ(probe.accepted->Value(), 0.0);
  EXPECT_EQ(submit(*p, "b", R"({"name":"other"})").status, 202u);
  std::promise<publish_result> tx;
  p->submit(
      "a", R"({"name":"tx"})", [&](publish_result d) { tx.set_value(std::move(d)); }, 150);
  auto committed = tx.get_future().get();
  EXPECT_EQ(committed.status, 202u) << "the transaction's own publish: " << committed.body;
  EXPECT_EQ(committed.version, 150u);
  {
    std::lock_guard lock(mu);
    held.clear();
  }
  EXPECT_EQ(submit(*p, "a", R"({"name":"after"})").status, 202u) << "the key is free again";
}

// An outbox from before the per-key floors (only "mversion"): its last version becomes every
// key's floor, the entries it holds are sent as they were, and later starts keep that floor.
TEST_F(publisher_test, AnOutboxWithoutPerKeyFloorsIsReadAndKeepsItsLastVersionAsTheFloor) {
  {
    entry e;
    e.key = "old";
    e.version = 500;
    e.time_us = 1;
    e.id = "id-old";
    e.value = "{}";
    store::write_batch b;
    b.put(entry_key(0), encode_entry(e));
    b.put(kVersionKey, std::string("\0\0\0\0\0\0\x01\xf4", 8));  // 500
    b.put(kNextSequenceKey, std::string("\0\0\0\0\0\0\0\x01", 8));
    ASSERT_FALSE(kv_.write(b, true));
  }
  auto p = make();
  // Not depth() == 1 here: the drain thread may have sent it already (failed 3 runs in 30).
  ASSERT_TRUE(drained(*p));
  EXPECT_EQ(versions_by_key()["old"], std::vector<std::uint64_t>{500});
  auto submit_at = [&](const std::string& key, std::uint64_t version) {
    std::promise<publish_result> done;
    auto f = done.get_future();
    p->submit(
        key, "{}", [&done](publish_result r) { done.set_value(std::move(r)); }, version);
    return f.get();
  };
  EXPECT_EQ(submit_at("new", 499).status, 409u);
  EXPECT_EQ(submit_at("new", 600).version, 600u);
  p.reset();
  p = make();  // the floor of a key never published stays 500, not the 600 assigned since
  EXPECT_EQ(submit_at("other", 550).version, 550u);
}

TEST_F(publisher_test, AStoreFailureIsA500AndNothingIsPublished) {
  auto p = make();
  kv_.fail_next_writes(1);
  auto r = submit(*p, "a", "{}");
  EXPECT_EQ(r.status, 500u);
  EXPECT_EQ(submit(*p, "b", "{}").status, 202u);
  ASSERT_TRUE(drained(*p));
  auto msgs = broker_.read_all("catalog.products.v1");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(*msgs[0].key, "b");
}

TEST_F(publisher_test, ConcurrentSubmittersShareFsyncs) {
  auto p = make(100000);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        if (submit(*p, "t" + std::to_string(t) + "-" + std::to_string(i), "{}").status == 202) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 400);
  ASSERT_TRUE(drained(*p));
  EXPECT_EQ(broker_.read_all("catalog.products.v1").size(), 400u);
}

TEST(VersionTest, HybridClockOnlyGrows) {
  EXPECT_EQ(next_version(0, 100), 100u);
  EXPECT_EQ(next_version(100, 100), 101u);
  EXPECT_EQ(next_version(500, 100), 501u);  // clock went back: still grows
  EXPECT_EQ(next_version(0, -5), 1u);
}

TEST(OutboxTest, EntriesRoundTrip) {
  entry e{"key/1", 77, 123456, "id", false, R"({"a":1})"};
  auto d = decode_entry(encode_entry(e));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->key, "key/1");
  EXPECT_EQ(d->version, 77u);
  EXPECT_EQ(d->time_us, 123456);
  EXPECT_EQ(d->id, "id");
  EXPECT_EQ(d->value, R"({"a":1})");
  EXPECT_FALSE(decode_entry("garbage"));
  EXPECT_EQ(sequence_of(entry_key(42)), 42u);
  EXPECT_LT(entry_key(255), entry_key(256));
}

}  // namespace
}  // namespace datashare::sidecar::publisher
