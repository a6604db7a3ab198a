#include "sidecar/replica/replica.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "sidecar/kafka/fake_broker.h"
#include "sidecar/replica/layout.h"
#include "sidecar/store/memory_kv.h"
#include "sidecar/store/read_index.h"

namespace datashare::sidecar::replica {
namespace {

// Lets a test keep the store across replica lifetimes (a restart keeps the disk).
class shared_kv final : public store::kv {
 public:
  explicit shared_kv(store::memory_kv& target, std::chrono::milliseconds write_delay = {},
                     std::vector<bool>* new_keys_hints = nullptr)
      : kv_(target), write_delay_(write_delay), hints_(new_keys_hints) {}
  std::error_code get(std::string_view k, std::string& v) const override { return kv_.get(k, v); }
  std::error_code write(const store::write_batch& b, bool sync) override {
    std::this_thread::sleep_for(write_delay_);  // a slow disk: the next batch is decided meanwhile
    return kv_.write(b, sync);
  }
  std::error_code scan(std::string_view b, std::string_view e, std::size_t l,
                       std::vector<store::entry>& o) const override {
    return kv_.scan(b, e, l, o);
  }
  void expect_new_keys(bool on) override {
    if (hints_ != nullptr) hints_->push_back(on);
  }

 private:
  store::memory_kv& kv_;
  std::chrono::milliseconds write_delay_;
  std::vector<bool>* hints_;  // expect_new_keys() as called (the loop thread)
};

config::subscribe_spec spec() {
  config::subscribe_spec s;
  s.policy = "orders-products";
  s.namespace_name = "orders";
  s.product.name = "products";
  s.product.namespace_name = "catalog";
  s.product.key = "id";
  s.product.fields = {{"id", config::field_type::string, false}, {"name", config::field_type::string, false}};
  s.topic = "catalog.products.v1";
  s.group = "g";
  s.fields = {"id", "name"};
  s.max_lag = std::chrono::seconds(5);
  return s;
}

class replica_test : public ::testing::Test {
 protected:
  void SetUp() override { broker_.create_topic("catalog.products.v1", 3); }

  // Into the key's partition, or into `partition` when given (a producer that knows a new count).
  void publish(const std::string& key, std::uint64_t version, std::optional<std::string> value,
               std::optional<std::int32_t> partition = std::nullopt) {
    kafka::message m;
    m.topic = "catalog.products.v1";
    m.key = key;
    m.value = std::move(value);
    m.headers.push_back({"datashare_version", std::to_string(version)});
    if (partition) {
      broker_.append_to(*partition, std::move(m));
    } else {
      broker_.append(std::move(m));
    }
  }

  std::unique_ptr<replica> make(std::chrono::milliseconds partition_check = std::chrono::minutes(10),
                                std::chrono::milliseconds write_delay = {}, std::size_t max_batch = 7,
                                bool parallel = true, store::memory_kv* kv = nullptr) {
    replica_options o;
    o.partition_check_interval = partition_check;
    o.poll_timeout = std::chrono::milliseconds(0);
    o.retry_backoff = std::chrono::milliseconds(0);
    o.max_batch = max_batch;  // 7: several batches per test
    o.pipeline = parallel;
    auto r = std::make_unique<replica>(
        spec(), std::make_unique<shared_kv>(kv != nullptr ? *kv : kv_, write_delay, &new_keys_hints_), *factory_,
        metrics_.replica("products", "p"), o);
    std::string error;
    EXPECT_FALSE(r->start(error)) << error;
    return r;
  }

  void drain(replica& r, int rounds = 50) {
    for (int i = 0; i < rounds; ++i) r.run_once();
  }

  // What the replica counted and stored: its counters, in memory and in the store (the same
  // batches as the data), and each partition's offset.
  void expect_stored(replica& r, std::uint64_t applied, std::uint64_t stale,
                     const std::map<std::int32_t, std::int64_t>& want_offsets) {
    EXPECT_EQ(r.status().applied_total, applied);
    EXPECT_EQ(r.status().stale_total, stale);
    EXPECT_EQ(load_counter(kv_, kAppliedCounter), applied);
    EXPECT_EQ(load_counter(kv_, kStaleCounter), stale);
    std::map<std::int32_t, std::int64_t> offsets;
    ASSERT_FALSE(load_offsets(kv_, offsets));
    EXPECT_EQ(offsets, want_offsets);
  }

  std::string value_of(const std::string& key) {
    item it;
    if (lookup(kv_, key, it)) return "<none>";
    return it.value;
  }

  kafka::fake_broker broker_;
  std::unique_ptr<kafka::client_factory> factory_ = broker_.factory();
  metrics::registry metrics_;
  store::memory_kv kv_;
  std::vector<bool> new_keys_hints_;  // what the replica told its store (shared_kv::expect_new_keys)
};

TEST_F(replica_test, BootstrapsFromTheBeginningAndBecomesReady) {
  for (int i = 0; i < 30; ++i)
    publish("k" + std::to_string(i % 10), static_cast<std::uint64_t>(i) + 1,
            R"({"name":"v)" + std::to_string(i) + R"("})");
  auto r = make();
  EXPECT_FALSE(r->status().ready);
  EXPECT_EQ(r->status().lag_events, 30);
  drain(*r);
  auto s = r->status();
  EXPECT_TRUE(s.caught_up_to_start);
  EXPECT_TRUE(s.ready);
  EXPECT_EQ(s.lag_events, 0);
  EXPECT_EQ(s.staleness_ms, 0);
  EXPECT_EQ(s.applied_total, 30u);
  for (int k = 0; k < 10; ++k)
    EXPECT_EQ(value_of("k" + std::to_string(k)), R"({"name":"v)" + std::to_string(20 + k) + R"("})");
  EXPECT_TRUE(broker_.has_topic("catalog.products.v1.dlq"));
}

// A copy at the watermarks it last saw is current only as of the broker's last answer: when the
// broker goes away (here with an owner's write the copy cannot see), its staleness grows from
// that answer, past maxLag it is no longer ready (hybrid reads then go to the owner), and once
// the broker is back it catches up and is current again.
TEST_F(replica_test, ACopyAtItsCachedWatermarksAgesWhileTheBrokerDoesNotAnswer) {
  for (int i = 0; i < 10; ++i) publish("k" + std::to_string(i), 1, R"({"name":"a"})");
  auto s = spec();
  s.max_lag = std::chrono::milliseconds(300);
  replica_options o;
  o.poll_timeout = std::chrono::milliseconds(0);
  o.retry_backoff = std::chrono::milliseconds(0);
  o.partition_check_interval = std::chrono::minutes(10);
  o.answer_tolerance = std::chrono::milliseconds(50);
  replica r(s, std::make_unique<shared_kv>(kv_, std::chrono::milliseconds(0)), *factory_,
            metrics_.replica("products", "p"), o);
  std::string error;
  ASSERT_FALSE(r.start(error)) << error;
  drain(r);
  ASSERT_TRUE(r.status().ready);
  EXPECT_EQ(r.status().staleness_ms, 0);

  broker_.set_down(true);
  publish("k1", 2, R"({"name":"b"})");
  const auto since = std::chrono::steady_clock::now();
  while (r.status().ready && std::chrono::steady_clock::now() - since < std::chrono::seconds(10)) r.run_once();
  const auto behind = r.status();
  EXPECT_FALSE(behind.ready);
  EXPECT_GT(behind.staleness_ms, 300);
  EXPECT_EQ(behind.lag_events, 0);  // as far as the cached watermarks tell
  EXPECT_EQ(value_of("k1"), R"({"name":"a"})");

  broker_.set_down(false);
  const auto back = std::chrono::steady_clock::now();
  while (!r.status().ready && std::chrono::steady_clock::now() - back < std::chrono::seconds(10)) r.run_once();
  EXPECT_TRUE(r.status().ready);
  EXPECT_EQ(r.status().staleness_ms, 0);
  EXPECT_EQ(value_of("k1"), R"({"name":"b"})");
}

// A start against a broker that does not answer gives up as soon as the sidecar stops, instead
// of waiting out request_timeout (each broker call is made in short slices). Without the stop it
// still fails after request_timeout, with the broker's timeout.
TEST_F(replica_test, StartAgainstAnUnansweringBrokerEndsOnStop) {
  broker_.set_down(true);
  replica_options o;
  o.request_timeout = std::chrono::seconds(30);
  replica r(spec(), std::make_unique<shared_kv>(kv_), *factory_, metrics_.replica("products", "p"), o);
  std::atomic<bool> stop{false};
  std::thread stopper([&stop] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop = true;
  });
  std::string error;
  auto ec = r.start(error, &stop);
  stopper.join();
  EXPECT_EQ(ec, kafka::make_error(kafka::kErrInterrupted)) << error;

  replica_options quick;
  quick.request_timeout = std::chrono::milliseconds(600);
  replica q(spec(), std::make_unique<shared_kv>(kv_), *factory_, metrics_.replica("products", "q"), quick);
  std::atomic<bool> never{false};
  EXPECT_EQ(q.start(error, &never), kafka::make_error(kafka::kErrTimedOut)) << error;
  EXPECT_EQ(q.start(error), kafka::make_error(kafka::kErrTimedOut)) << error;
}

// A consumer that stops handing out events without an error while the copy is behind (librdkafka
// can stop fetching a partition so) is replaced after stall_timeout by a new one assigned at the
// stored offsets: the copy catches up, nothing is applied twice. A copy that is current while its
// consumer hands out nothing is quiet, not stalled: no replacement. One that stalls when caught
// up, its cached watermarks stopped with its fetches, is seen behind by the brokers' watermarks
// (asked every broker_watermark_interval) once the owner publishes, and replaced too (until
// 2026-12-04 it was not seen: lag 0 while the owner published).
TEST_F(replica_test, AConsumerThatStopsHandingOutEventsWhileBehindIsReplaced) {
  for (int i = 0; i < 10; ++i) publish("k" + std::to_string(i), 1, R"({"name":"first"})");
  replica_options o;
  o.poll_timeout = std::chrono::milliseconds(0);
  o.retry_backoff = std::chrono::milliseconds(0);
  o.partition_check_interval = std::chrono::minutes(10);
  o.max_batch = 7;
  o.stall_timeout = std::chrono::milliseconds(200);
  o.broker_watermark_interval = std::chrono::milliseconds(20);
  replica r(spec(), std::make_unique<shared_kv>(kv_), *factory_, metrics_.replica("products", "p"), o);
  std::string error;
  ASSERT_FALSE(r.start(error)) << error;
  auto run_for = [&r](std::chrono::milliseconds d, const std::function<bool()>& done) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (!done() && std::chrono::steady_clock::now() < until) {
      r.run_once();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  r.run_once();  // one batch of 7: 3 events behind
  broker_.stall_consumers();
  const int made = broker_.consumers_made();
  run_for(std::chrono::milliseconds(100), [] { return false; });
  ASSERT_EQ(r.status().applied_total, 7u) << "the stalled consumer handed something out";
  ASSERT_EQ(r.status().lag_events, 3);
  ASSERT_EQ(r.status().consumer_restarts, 0u) << "replaced before stall_timeout";
  run_for(std::chrono::seconds(10), [&r] { return r.status().applied_total == 10u; });
  auto s = r.status();
  EXPECT_EQ(s.applied_total, 10u);
  EXPECT_EQ(s.lag_events, 0);
  EXPECT_EQ(s.consumer_restarts, 1u);
  EXPECT_EQ(broker_.consumers_made(), made + 1);

  // The new consumer reads what comes next.
  for (int i = 0; i < 5; ++i) publish("k" + std::to_string(i), 2, R"({"name":"second"})");
  run_for(std::chrono::seconds(10), [&r] { return r.status().applied_total == 15u; });
  s = r.status();
  EXPECT_EQ(s.applied_total, 15u);
  EXPECT_EQ(s.stale_total, 0u);  // nothing applied twice
  EXPECT_EQ(value_of("k4"), R"({"name":"second"})");
  EXPECT_EQ(value_of("k7"), R"({"name":"first"})");

  // Current and quiet: its consumer handing out nothing is not a stall.
  broker_.stall_consumers();
  run_for(std::chrono::milliseconds(500), [] { return false; });
  EXPECT_EQ(r.status().consumer_restarts, 1u) << "a current copy's quiet consumer was replaced";
  EXPECT_EQ(broker_.consumers_made(), made + 1);

  // Stalled while current, and then the owner publishes: the brokers' watermarks show the copy
  // behind, and the consumer is replaced.
  for (int i = 0; i < 5; ++i) publish("k" + std::to_string(i), 3, R"({"name":"third"})");
  run_for(std::chrono::seconds(5), [&r] { return r.status().lag_events == 5; });
  EXPECT_EQ(r.status().lag_events, 5) << "behind, by the brokers' figures";
  EXPECT_EQ(r.status().applied_total, 15u);
  run_for(std::chrono::seconds(10), [&r] { return r.status().applied_total == 20u; });
  s = r.status();
  EXPECT_EQ(s.applied_total, 20u);
  EXPECT_EQ(s.lag_events, 0);
  EXPECT_EQ(s.consumer_restarts, 2u);
  EXPECT_EQ(broker_.consumers_made(), made + 2);
  EXPECT_EQ(value_of("k4"), R"({"name":"third"})");
  EXPECT_NE(metrics_.serialize().find("datashare_replica_consumer_restarts_total{policy=\"p\",product=\"products\"} 2"),
            std::string::npos);
}

TEST_F(replica_test, RestartResumesFromItsOwnStoredOffsets) {
  for (int i = 0; i < 10; ++i) publish("k" + std::to_string(i), 1, "{}");
  {
    auto r = make();
    drain(*r);
    EXPECT_EQ(r->status().applied_total, 10u);
  }
  for (int i = 0; i < 10; ++i) publish("k" + std::to_string(i), 2, R"({"name":"second"})");
  auto r = make();
  drain(*r);
  // Each event applied exactly once across both lifetimes; none seen twice.
  EXPECT_EQ(r->status().applied_total, 20u);
  EXPECT_EQ(r->status().stale_total, 0u);
  EXPECT_EQ(value_of("k3"), R"({"name":"second"})");
}

TEST_F(replica_test, PartitionsAddedToTheTopicAreReadWithoutARestart) {
  for (int i = 0; i < 10; ++i) publish("k" + std::to_string(i), 1, "{}");
  auto r = make(std::chrono::milliseconds(0));  // look at the metadata on every round
  drain(*r);
  ASSERT_EQ(r->status().applied_total, 10u);
  ASSERT_TRUE(broker_.add_partitions("catalog.products.v1", 5));
  publish("k-new", 1, R"({"name":"new"})", 4);
  drain(*r);
  EXPECT_EQ(value_of("k-new"), R"({"name":"new"})");
  EXPECT_EQ(r->status().applied_total, 11u);
  EXPECT_EQ(r->status().lag_events, 0);
  // The old partitions were not read twice, and the new partition's offset is stored with the data.
  EXPECT_EQ(r->status().stale_total, 0u);
  std::map<std::int32_t, std::int64_t> offsets;
  ASSERT_FALSE(load_offsets(kv_, offsets));
  EXPECT_EQ(offsets[4], 1);
  // A restart resumes the new partition from its stored offset too.
  r = make();
  drain(*r);
  EXPECT_EQ(r->status().applied_total, 11u);
  EXPECT_EQ(r->status().stale_total, 0u);
}

TEST_F(replica_test, WithoutAMetadataCheckNewPartitionsWait) {
  auto r = make();  // the check is 10 minutes away
  drain(*r);
  ASSERT_TRUE(broker_.add_partitions("catalog.products.v1", 4));
  publish("k-new", 1, R"({"name":"new"})", 3);
  drain(*r);
  EXPECT_EQ(value_of("k-new"), "<none>");
}

TEST_F(replica_test, AFailedWriteRewindsAndLosesNothing) {
  for (int i = 0; i < 20; ++i) publish("k" + std::to_string(i), 1, "{}");
  auto r = make();
  kv_.fail_next_writes(3);
  drain(*r);
  EXPECT_EQ(r->status().applied_total, 20u);
  EXPECT_EQ(load_counter(kv_, kAppliedCounter), 20u);
  EXPECT_EQ(load_counter(kv_, kStaleCounter), 0u);
}

TEST_F(replica_test, PoisonGoesToTheDeadLetterTopicWithItsReason) {
  publish("a", 1, "not json");
  publish("a", 2, R"({"name":"good"})");
  auto r = make();
  drain(*r);
  EXPECT_EQ(value_of("a"), R"({"name":"good"})");
  auto dlq = broker_.read_all("catalog.products.v1.dlq");
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(*dlq[0].value, "not json");
  EXPECT_EQ(*dlq[0].key, "a");
  EXPECT_EQ(*dlq[0].header_value("datashare_dlq_reason"), "value is not JSON");
  EXPECT_EQ(*dlq[0].header_value("datashare_version"), "1");
  EXPECT_EQ(r->status().dlq_total, 1u);
}

TEST_F(replica_test, ABatchWaitsUntilItsPoisonIsSafelyDeadLettered) {
  publish("a", 1, "not json");
  publish("b", 1, R"({"name":"b"})");
  auto r = make();
  broker_.set_fail_deliveries(true);
  drain(*r, 5);
  EXPECT_EQ(value_of("b"), "<none>");  // nothing written while the DLQ refuses
  EXPECT_EQ(r->status().applied_total, 0u);
  broker_.set_fail_deliveries(false);
  drain(*r);
  EXPECT_EQ(value_of("b"), R"({"name":"b"})");
  EXPECT_EQ(broker_.read_all("catalog.products.v1.dlq").size(), 1u);
}

TEST_F(replica_test, StaleDuplicatesAreCountedNotApplied) {
  publish("a", 5, R"({"name":"five"})");
  publish("a", 4, R"({"name":"four"})");
  publish("a", 5, R"({"name":"five again"})");
  auto r = make();
  drain(*r);
  EXPECT_EQ(value_of("a"), R"({"name":"five"})");
  EXPECT_EQ(r->status().stale_total, 2u);
}

// A store written when the counters were single keys keeps its counts: they move to a
// partition's keys at start, in one write, and go on from there, across restarts.
TEST_F(replica_test, AStoreWithTheOldSingleCountersKeepsItsCounts) {
  store::write_batch old;
  old.put(kAppliedCounter, encode_u64(100));
  old.put(kStaleCounter, encode_u64(7));
  old.put(kDlqCounter, encode_u64(3));
  ASSERT_FALSE(kv_.write(old, false));
  publish("a", 2, R"({"name":"two"})");
  publish("a", 1, R"({"name":"one"})");  // stale
  publish("b", 1, "not json");           // poison
  publish("c", 1, "{}");
  {
    auto r = make();
    drain(*r);
    auto s = r->status();
    EXPECT_EQ(s.applied_total, 102u);
    EXPECT_EQ(s.stale_total, 8u);
    EXPECT_EQ(s.dlq_total, 4u);
    std::string v;
    EXPECT_EQ(kv_.get(kAppliedCounter, v), store::errc::not_found);  // the single keys are gone
    EXPECT_EQ(kv_.get(kDlqCounter, v), store::errc::not_found);
  }
  EXPECT_EQ(load_counter(kv_, kAppliedCounter), 102u);
  EXPECT_EQ(load_counter(kv_, kStaleCounter), 8u);
  EXPECT_EQ(load_counter(kv_, kDlqCounter), 4u);
  publish("d", 1, "{}");
  auto r = make();
  EXPECT_EQ(r->status().applied_total, 102u);
  drain(*r);
  EXPECT_EQ(r->status().applied_total, 103u);
  EXPECT_EQ(r->status().dlq_total, 4u);
}

TEST_F(replica_test, ABootstrapChecksVersionsOfKeysItWroteInEarlierBatches) {
  // An empty store at start: keys this run never wrote are not looked up, those it wrote are,
  // however many batches ago (max_batch 7).
  publish("a", 5, R"({"name":"five"})");
  for (int i = 0; i < 30; ++i) publish("k" + std::to_string(i), 1, "{}");
  publish("a", 4, R"({"name":"four"})");
  publish("a", 6, R"({"name":"six"})");
  publish("a", 6, R"({"name":"six again"})");
  auto r = make();
  drain(*r);
  EXPECT_EQ(value_of("a"), R"({"name":"six"})");
  EXPECT_EQ(r->status().stale_total, 2u);
  EXPECT_EQ(r->status().applied_total, 32u);
}

// A bootstrap (an empty store at start) writes keys the store does not hold and looks up almost
// none of them (its own filter): the store is told so, and told again once the copy has caught
// up, when every event's key is looked up (RocksDB keeps a memtable bloom filter for those).
TEST_F(replica_test, ABootstrapTellsTheStoreToExpectNewKeysUntilItHasCaughtUp) {
  for (int i = 0; i < 30; ++i) publish("k" + std::to_string(i), 1, "{}");
  auto r = make();
  EXPECT_EQ(new_keys_hints_, std::vector<bool>{true});
  drain(*r);
  ASSERT_TRUE(r->status().caught_up_to_start);
  EXPECT_EQ(new_keys_hints_, (std::vector<bool>{true, false}));
  // A restart on the filled store is no bootstrap.
  r.reset();
  new_keys_hints_.clear();
  publish("k1", 2, "{}");
  r = make();
  drain(*r);
  EXPECT_TRUE(new_keys_hints_.empty());
}

TEST_F(replica_test, AStoreWithDataAtStartLooksUpEveryKey) {
  // A record without stored offsets (as a rolled-back or copied store may hold): the topic is
  // read from the beginning, and its older event must meet the stored version.
  store::write_batch b;
  b.put(data_key("x"), encode_record(9, 0, false, R"({"name":"nine"})"));
  ASSERT_FALSE(kv_.write(b, false));
  publish("x", 3, R"({"name":"three"})");
  auto r = make();
  drain(*r);
  EXPECT_EQ(value_of("x"), R"({"name":"nine"})");
  EXPECT_EQ(r->status().stale_total, 1u);
}

TEST_F(replica_test, ABatchDecidedWhileThePreviousOneIsWrittenSeesItsVersions) {
  // Seven events fill a batch (max_batch 7): it is written on the writer thread, slowly, while
  // the next batch is decided. Version 3 must be stale against the 7 still being written.
  for (std::uint64_t v = 1; v <= 7; ++v) publish("a", v, R"({"name":"v)" + std::to_string(v) + R"("})");
  publish("a", 3, R"({"name":"old"})");
  publish("a", 8, R"({"name":"v8"})");
  auto r = make(std::chrono::minutes(10), std::chrono::milliseconds(200));
  drain(*r, 5);
  EXPECT_EQ(value_of("a"), R"({"name":"v8"})");
  EXPECT_EQ(r->status().stale_total, 1u);
  EXPECT_EQ(r->status().applied_total, 8u);
  // The persisted counters count the batch that was in flight exactly once.
  EXPECT_EQ(load_counter(kv_, kAppliedCounter), 8u);
  EXPECT_EQ(load_counter(kv_, kStaleCounter), 1u);
}

// Everything a store holds (data, offsets, counters), as one string to compare.
std::string dump(const store::kv& kv) {
  std::vector<store::entry> all;
  EXPECT_FALSE(kv.scan("", "", 1000000, all));
  std::string out;
  for (const auto& [k, v] : all) out += k + "=" + v + "\n";
  return out;
}

// Full batches are applied by a worker per partition, in parallel; the store must end exactly as
// when every batch is applied on the loop thread: data, each partition's offset, the counters.
// The fake broker's poll takes partitions in turn, so with 50-event batches most rounds hold
// two partitions' events, some one, and the tail is a smaller batch applied on the loop thread.
TEST_F(replica_test, PartitionsAppliedInParallelStoreWhatOneThreadStores) {
  for (int i = 0; i < 400; ++i) {
    const std::string k = "k" + std::to_string(i % 37);
    const std::uint64_t v = static_cast<std::uint64_t>(i / 37) + 1;
    if (i % 53 == 0) {
      publish(k, v, std::nullopt);  // a delete
    } else if (i % 61 == 0) {
      publish(k, v, "not json");  // poison
    } else if (i % 29 == 0) {
      publish(k, v > 1 ? v - 1 : v, R"({"name":"stale"})");  // older than what came before
    } else {
      publish(k, v, R"({"name":"v)" + std::to_string(i) + R"("})");
    }
  }
  store::memory_kv one_thread;
  {
    auto r = make(std::chrono::minutes(10), {}, 50, false, &one_thread);
    drain(*r);
    ASSERT_TRUE(r->status().caught_up_to_start);
    EXPECT_EQ(r->times().rounds, 0u);
  }
  auto r = make(std::chrono::minutes(10), {}, 50, true);
  drain(*r);
  ASSERT_TRUE(r->status().caught_up_to_start);
  EXPECT_GE(r->times().rounds, 5u);  // the workers applied most of it
  EXPECT_EQ(r->times().conflicts, 0u);
  const std::string expected = dump(one_thread);
  EXPECT_EQ(dump(kv_), expected);
  EXPECT_NE(expected.find("sapplied"), std::string::npos);
  EXPECT_GT(r->status().stale_total, 0u);
  EXPECT_GT(r->status().dlq_total, 0u);
}

// The propagation histogram is fed a batch at a time (bucketed by the workers, one
// ObserveMultiple per plan): it still counts every applied event once, whichever thread applied
// it, and nothing else.
TEST_F(replica_test, ThePropagationHistogramCountsEveryAppliedEventOfTheRounds) {
  for (int i = 0; i < 300; ++i) {
    publish("k" + std::to_string(i % 41), static_cast<std::uint64_t>(i / 41) + 1,
            i % 47 == 0 ? std::string("not json") : R"({"name":"v)" + std::to_string(i) + R"("})");
  }
  publish("k0", 1, R"({"name":"stale"})");  // counted stale, not observed
  auto r = make(std::chrono::minutes(10), {}, 50, true);
  drain(*r);
  ASSERT_TRUE(r->status().caught_up_to_start);
  EXPECT_GE(r->times().rounds, 5u);
  EXPECT_GT(r->status().stale_total, 0u);
  EXPECT_GT(r->status().dlq_total, 0u);
  const std::string text = metrics_.serialize();
  const std::string labels = R"({policy="p",product="products")";
  EXPECT_NE(
      text.find("datashare_propagation_seconds_count" + labels + "} " + std::to_string(r->status().applied_total)),
      std::string::npos)
      << text;
  // The fake broker's events carry no time: every observation is ~now since 1970, in +Inf only.
  EXPECT_NE(text.find("datashare_propagation_seconds_bucket" + labels + R"(,le="30"} 0)"), std::string::npos) << text;
  EXPECT_NE(text.find("datashare_propagation_seconds_bucket" + labels + R"(,le="+Inf"} )" +
                      std::to_string(r->status().applied_total)),
            std::string::npos)
      << text;
}

// readIndex: memory. The index over the store, through parallel rounds of puts, deletes
// (tombstones), stale events (skipped: nothing written) and poison, and loaded again at a
// restart: every key reads the same through it as from the store, and the replica's own version
// lookups (answered by the index) keep it applying what a plain store applies.
TEST_F(replica_test, AReadIndexAgreesWithItsStoreThroughParallelRoundsAndARestart) {
  auto stream = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string k = "k" + std::to_string(i % 37);
      const std::uint64_t v = static_cast<std::uint64_t>(i / 37) + 1;
      if (i % 53 == 0) {
        publish(k, v, std::nullopt);
      } else if (i % 61 == 0) {
        publish(k, v, "not json");
      } else if (i % 29 == 0) {
        publish(k, v > 1 ? v - 1 : v, R"({"name":"stale"})");
      } else {
        publish(k, v, R"({"name":"v)" + std::to_string(i) + R"("})");
      }
    }
  };
  auto make_indexed = [&] {
    replica_options o;
    o.partition_check_interval = std::chrono::minutes(10);
    o.poll_timeout = std::chrono::milliseconds(0);
    o.retry_backoff = std::chrono::milliseconds(0);
    o.max_batch = 50;
    auto indexed = store::with_read_index(std::make_unique<shared_kv>(kv_), std::string(1, kDataPrefix));
    auto r = std::make_unique<replica>(spec(), std::move(indexed), *factory_, metrics_.replica("products", "p"), o);
    std::string error;
    EXPECT_FALSE(r->start(error)) << error;
    return r;
  };
  auto expect_agreement = [&](const store::kv& indexed) {
    // The index is built (again, after a bootstrap) on its own thread; until then reads skip it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (indexed.property("datashare.read-index.state") == "building" &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(indexed.property("datashare.read-index.state"), "ready");
    for (int k = 0; k < 37; ++k) {
      const std::string key = data_key("k" + std::to_string(k));
      std::string a, b;
      EXPECT_EQ(indexed.get(key, a), kv_.get(key, b)) << key;
      EXPECT_EQ(a, b) << key;
    }
  };
  stream(0, 400);
  {
    auto r = make_indexed();
    drain(*r);
    ASSERT_TRUE(r->status().caught_up_to_start);
    EXPECT_GE(r->times().rounds, 5u);
    EXPECT_GT(r->status().stale_total, 0u);
    expect_agreement(r->store());
  }
  stream(400, 700);
  auto r = make_indexed();
  drain(*r);
  expect_agreement(r->store());
  store::memory_kv one_thread;
  {
    auto plain = make(std::chrono::minutes(10), {}, 50, false, &one_thread);
    drain(*plain);
  }
  EXPECT_EQ(dump(kv_), dump(one_thread));
}

// A key found in two partitions (moved to a partition added later, while an older event of it is
// still unread in its old one): two workers in one round would both check against the same stored
// version and both write. The conflict is found before either writes, and the two plans are
// applied one after the other: the older event is stale, whichever partition it is in.
TEST_F(replica_test, AKeyInTwoPartitionsOfOneRoundKeepsItsNewestVersion) {
  publish("a", 5, R"({"name":"five"})", 0);
  publish("b", 1, R"({"name":"b"})", 0);
  publish("a", 3, R"({"name":"three"})", 1);
  publish("c", 1, R"({"name":"c"})", 1);
  publish("a", 4, R"({"name":"four"})", 2);
  publish("d", 1, R"({"name":"d"})", 2);
  auto r = make(std::chrono::minutes(10), {}, 6, true);
  drain(*r);
  EXPECT_EQ(r->times().rounds, 1u);
  EXPECT_EQ(r->times().conflicts, 3u);  // the three workers' plans all write "a"
  EXPECT_EQ(value_of("a"), R"({"name":"five"})");
  EXPECT_EQ(value_of("d"), R"({"name":"d"})");
  expect_stored(*r, 4, 2, {{0, 2}, {1, 2}, {2, 2}});
}

// Two rounds in flight: a worker decides the next round as soon as it has written its part of the
// one before, while the other workers may still be writing theirs. A key in two partitions (moved
// to a partition added later) then has its newer event in a write still in flight when its older
// one, in the next round, is decided: the plans of the round before count as stored, so the older
// event is stale, and the newest version stays (it was written last, and the older one is not
// written at all).
TEST_F(replica_test, ARoundDecidedWhileTheRoundBeforeIsWrittenSeesItsVersions) {
  // Round one: partitions 1 and 2 (the fake broker's poll takes partition 0 first: empty), each
  // worker's write taking 200 ms.
  publish("a", 5, R"({"name":"five"})", 1);
  publish("b", 1, R"({"name":"b"})", 1);
  publish("c", 1, R"({"name":"c"})", 2);
  publish("d", 1, R"({"name":"d"})", 2);
  auto r = make(std::chrono::minutes(10), std::chrono::milliseconds(200), 4, true);
  r->run_once();
  ASSERT_EQ(r->times().rounds, 1u);
  // Round two, handed out while round one is written: partition 0's worker had nothing in round
  // one and decides "a" 4 while partition 1's worker is still writing "a" 5.
  publish("a", 4, R"({"name":"four"})", 0);
  publish("e", 1, R"({"name":"e"})", 0);
  publish("f", 1, R"({"name":"f"})", 2);
  publish("g", 1, R"({"name":"g"})", 2);
  r->run_once();
  EXPECT_EQ(r->times().rounds, 2u);
  EXPECT_EQ(r->times().overlapped, 1u);
  drain(*r, 5);
  EXPECT_EQ(value_of("a"), R"({"name":"five"})");
  EXPECT_EQ(value_of("e"), R"({"name":"e"})");
  expect_stored(*r, 7, 1, {{0, 2}, {1, 2}, {2, 4}});
}

// A worker whose write fails leaves its partitions at their stored offsets; the others' writes of
// the same round stand, and the rewind reads the failed partitions again: nothing lost, nothing
// applied twice.
TEST_F(replica_test, AFailedWriteInARoundRewindsOnlyWhatWasNotWritten) {
  for (int i = 0; i < 90; ++i) publish("k" + std::to_string(i), 1, "{}");
  auto r = make(std::chrono::minutes(10), {}, 40, true);
  kv_.fail_next_writes(1);
  drain(*r);
  EXPECT_GE(r->times().rounds, 1u);
  EXPECT_EQ(r->status().applied_total, 90u);
  EXPECT_EQ(r->status().stale_total, 0u);
  EXPECT_EQ(load_counter(kv_, kAppliedCounter), 90u);
  EXPECT_EQ(r->status().lag_events, 0);
}

TEST_F(replica_test, ScanPagesSkipTombstones) {
  for (int i = 0; i < 10; ++i) publish("k" + std::to_string(i), 1, "{}");
  publish("k1", 2, std::nullopt);
  publish("k5", 2, std::nullopt);
  auto r = make();
  drain(*r);
  std::vector<item> page;
  bool more = false;
  ASSERT_FALSE(scan(kv_, "", 3, page, more));
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].key, "k0");
  EXPECT_EQ(page[1].key, "k2");
  EXPECT_EQ(page[2].key, "k3");
  EXPECT_TRUE(more);
  std::vector<std::string> all;
  std::string after;
  for (int guard = 0; guard < 10; ++guard) {
    page.clear();
    ASSERT_FALSE(scan(kv_, after, 3, page, more));
    for (auto& it : page) all.push_back(it.key);
    if (!more) break;
    after = page.back().key;
  }
  EXPECT_EQ(all, (std::vector<std::string>{"k0", "k2", "k3", "k4", "k6", "k7", "k8", "k9"}));
  item it;
  EXPECT_EQ(lookup(kv_, "k1", it), store::errc::not_found);
}

}  // namespace
}  // namespace datashare::sidecar::replica
