#pragma once
// One policy's local copy kept up to date from its topic: the consumer loop around the applier.
//
// Start: every partition of the topic is assigned (each replica needs the whole dataset) from the
// offsets stored with the data, or from the beginning on first start; the high watermarks seen
// then are the bar for /readyz. Partitions added to the topic later are noticed by a metadata
// check every partition_check_interval and read from their beginning. Loop: poll a batch → decide (applier) → poison
// events to
// `<topic>.dlq` and flushed → one write of data + offsets + counters → metrics, status, and an
// occasional offset commit to the group for outside tools. Any failure before the write rewinds
// the consumer to the stored offsets, so nothing is lost and nothing applied twice.
//
// Threading: start() and run_once()/run() on one thread (the replica's loop); status(), store()
// and spec() from any thread. Owns its store, consumer and dead-letter producer, and the workers
// that apply a full batch's partitions in parallel (started with the first full batch: a replica
// that is caught up applies its small batches on the loop thread and starts none).

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "sidecar/config/config.h"
#include "sidecar/kafka/client.h"
#include "sidecar/metrics/metrics.h"
#include "sidecar/replica/applier.h"
#include "sidecar/store/kv.h"

namespace datashare::sidecar::replica {

struct replica_options {
  std::chrono::milliseconds poll_timeout{100};
  std::size_t max_batch = 5000;
  std::chrono::milliseconds commit_interval{1000};
  std::chrono::milliseconds request_timeout{10000};  // metadata, watermarks, dead-letter flush
  std::chrono::milliseconds retry_backoff{200};
  // How often the topic's metadata is asked for partitions added since the start; new ones are
  // read from the beginning without a restart.
  std::chrono::milliseconds partition_check_interval{5000};
  // A copy at the cached high watermarks is current only as of its brokers' last answer
  // (consumer::last_answer_us): librdkafka's cache comes from fetch responses, which stop without
  // an error when a broker goes away or freezes. An answer this recent (plus two polls) counts as
  // now: the staleness reads 0 (librdkafka tells it every statistics.interval.ms, 500 ms).
  std::chrono::milliseconds answer_tolerance{1000};
  // A consumer that hands out nothing for this long while the copy is behind the high watermarks
  // is replaced by a new one, assigned at the stored offsets (nothing lost, nothing applied
  // twice). librdkafka has been reported to stop delivering without an error after a broker
  // outage or a connection loss (confluentinc/librdkafka#4916, confluent-kafka-javascript#430); a
  // replica that waits for it stays behind for good. 0: never.
  std::chrono::milliseconds stall_timeout{30000};
  // How often a thread of the replica's own asks the brokers for every partition's high watermark
  // (one request per partition, on a consumer of its own, never on the apply loop): a consumer
  // that stops fetching while the copy is current also stops its cached watermarks, so without
  // the brokers' figures the copy would look current (lag 0) while the owner publishes, and the
  // stall guard would never see it. 0: never (cached watermarks only).
  std::chrono::milliseconds broker_watermark_interval{5000};
  bool sync_writes = false;  // see README: offsets travel with the data, a crash rewinds both
  // A store without a write-ahead log (the sidecar's RocksDB replica store) is flushed at least
  // this often while events are applied: the bound on what a crash rolls back (README). Each
  // flush makes a table file, compacted later (shorter: more compactions of a slow stream's small
  // files); a flush starts, the loop does not wait.
  std::chrono::milliseconds store_flush_interval{60000};
  // A full batch (max_batch events) is applied by the workers, partitions in parallel, while the
  // next one is polled; a smaller batch is applied on the loop thread before run_once() returns.
  // False: every batch on the loop thread.
  bool pipeline = true;
  // The workers that apply a full batch, each the partitions p with p % workers == its index:
  // each decides its partitions' events and writes them with their offsets and counters in a
  // write of its own. 0: one per partition, at most kMaxWorkers. Started with the first full batch.
  std::size_t apply_workers = 0;
  static constexpr std::size_t kMaxWorkers = 8;
};

struct replica_status {
  bool caught_up_to_start = false;  // every partition reached the high watermark seen at start
  bool ready = false;               // caught up, and staleness within maxLag
  std::int64_t lag_events = 0;
  std::int64_t staleness_ms = 0;
  std::uint64_t applied_total = 0;  // persisted across restarts, like the data
  std::uint64_t stale_total = 0;
  std::uint64_t dlq_total = 0;
  std::uint64_t consumer_restarts = 0;  // this run's (stall_timeout)
};

class replica {
 public:
  replica(config::subscribe_spec spec, std::unique_ptr<store::kv> kv, kafka::client_factory& kafka,
          metrics::replica_probe probe, replica_options options = {});
  ~replica();
  replica(const replica&) = delete;
  replica& operator=(const replica&) = delete;

  // Connects and assigns; errors name what failed (missing topic, store unreadable, ...).
  // `stop` (optional): the broker calls are made in short slices (kStartSlice) and the start
  // gives up, with kafka::kErrInterrupted ("stopping"), as soon as it is set: a SIGTERM during a
  // start against a slow or unreachable broker does not wait for request_timeout.
  std::error_code start(std::string& error, const std::atomic<bool>* stop = nullptr);
  static constexpr std::chrono::milliseconds kStartSlice{250};
  // One poll-and-apply round; returns after at most about poll_timeout when idle.
  void run_once();
  void run(const std::atomic<bool>& stop);

  replica_status status() const;
  // Where the loop's wall time went so far (benchmarks, tests; the loop thread): in the consumer's
  // poll (converting the messages, and waiting when librdkafka's queue is empty) and waiting for
  // the workers; and how many rounds the workers applied.
  struct loop_times {
    double poll_s = 0;
    double workers_wait_s = 0;
    std::uint64_t rounds = 0;      // full batches applied by the workers
    std::uint64_t overlapped = 0;  // rounds handed out while the round before was still applied
    std::uint64_t conflicts = 0;   // worker plans decided again in turn (a key in two partitions)
    double largest_share = 0;      // the busiest worker's share of a round's events, on average
  };
  loop_times times() const {
    return {poll_s_,     workers_wait_s_, rounds_,
            overlapped_, conflicts_,      rounds_ == 0 ? 0 : largest_share_sum_ / static_cast<double>(rounds_)};
  }
  const store::kv& store() const { return *kv_; }
  store::kv& store() { return *kv_; }  // benchmarks: flush and settle the store after a run
  const config::subscribe_spec& spec() const { return spec_; }
  std::string dlq_topic() const { return spec_.topic + ".dlq"; }

 private:
  void rewind(const char* why);
  // Assigns every known partition at its stored position (the beginning when none is stored).
  std::error_code assign_stored();
  void check_partitions();
  // Waits for the rounds in flight: then positions_ are what is stored. False when one of them
  // failed (the consumer was rewound to the stored offsets instead).
  bool settle();
  // A new consumer in place of one that stalled (replica_options::stall_timeout).
  void restart_consumer();
  bool send_to_dlq(const plan& p);
  // The brokers' high watermarks (replica_options::broker_watermark_interval), on marks_thread_.
  void marks_loop();
  void stop_marks();
  void update_status(std::int64_t now_us, std::int64_t newest_applied_us);

  // A full batch as a round of the workers: dispatch() hands each worker its partitions'
  // messages, while up to one round before it may still be applied (two rounds in flight: a
  // worker decides the next round as soon as it has written its part of the one before, without
  // waiting for the others' writes or the loop). Each worker decides its messages (prepare,
  // counting the other workers' plans of the round before as stored: they may still be written),
  // waits until every worker has decided the round (so every write of the round before is done),
  // and writes its plan unless another worker's plan of the round writes one of its keys (a key
  // that moved to a partition added later: both checked against the same stored version). Such
  // plans are decided again and written one after the other, in the workers' order, before the
  // round ends. finish_oldest() waits for the oldest round in flight, accounts for its writes
  // (positions, counters, metrics) and returns its first error, after which the caller drains
  // and rewinds; drain() does that for every round in flight (no error without one).
  struct worker;
  void dispatch(std::int64_t now_us);
  std::error_code finish_oldest(std::int64_t& newest_applied_us, std::string& why);
  std::error_code drain(std::int64_t& newest_applied_us, std::string& why);
  bool oldest_done();
  void worker_loop(worker& w);
  // Decides, dead-letters and writes `messages` on the calling thread, then accounts for them.
  std::error_code apply_inline(std::span<const kafka::message> messages, plan& p, std::int64_t now_us,
                               std::int64_t& newest_applied_us, std::string& why);
  // A plan's propagation times sorted into the histogram's buckets (any thread: the workers do
  // their own in parallel), for one ObserveMultiple in account().
  struct observations {
    std::vector<double> buckets;  // propagation_bounds.size() + 1 (the last: +Inf)
    double sum_s = 0;
  };
  void bucket(const plan& p, observations& out) const;
  // Positions, counters and metrics of a written plan (loop thread, no round in flight).
  void account(std::span<const kafka::message> messages, const plan& p, const observations& seen,
               std::int64_t& newest_applied_us);
  std::size_t worker_of(std::int32_t partition) const { return static_cast<std::size_t>(partition) % workers_.size(); }

  config::subscribe_spec spec_;
  std::unique_ptr<store::kv> kv_;
  kafka::client_factory& kafka_;
  metrics::replica_probe probe_;
  replica_options options_;
  applier applier_;
  std::unique_ptr<kafka::consumer> consumer_;
  std::unique_ptr<kafka::producer> dlq_;
  std::mutex dlq_mu_;  // workers dead-letter their poison in parallel rounds
  std::atomic<int> dlq_failures_{0};

  // Loop-thread state (read by the workers during a round, never changed then).
  std::vector<std::int32_t> partitions_;
  std::map<std::int32_t, std::int64_t> positions_;   // next offset to apply, as stored
  std::map<std::int32_t, std::int64_t> start_high_;  // high watermarks seen at start
  // When the brokers last answered: the start's questions, then consumer::last_answer_us.
  std::int64_t answered_at_us_ = 0;
  std::chrono::steady_clock::time_point last_commit_{};
  std::chrono::steady_clock::time_point last_partition_check_{};
  std::chrono::steady_clock::time_point last_flush_{};
  std::chrono::steady_clock::time_point last_progress_{};  // the last poll that handed out events
  std::int64_t store_probed_us_ = 0;                       // the store's gauges, read once a second
  bool unflushed_ = false;                                 // written since the last flush
  // The polled batch (its messages' buffers reused from poll to poll, and exchanged with the
  // workers' when a round is dispatched), and the plan of a batch applied on the loop thread.
  std::vector<kafka::message> batch_;
  plan inline_plan_;
  observations inline_seen_;
  // Each partition's persistent counters as stored (written batches only).
  std::map<std::int32_t, totals> partition_totals_;
  // While a replica that started on an empty store bootstraps: every key it has written (or is
  // writing), so that the version lookup of a key never written is skipped (applier::prepare).
  // Shared by the workers (a key that moved partitions may be met by two). Dropped once caught
  // up to the start's high watermarks, between rounds.
  std::unique_ptr<written_keys> fresh_;

  std::vector<std::unique_ptr<worker>> workers_;
  std::mutex round_mu_;
  std::condition_variable round_cv_;  // workers: a round handed out, every worker decided, a turn
  std::condition_variable done_cv_;   // the loop: every worker done with a round
  // Every worker takes part in every round (one with no messages only passes its barriers): the
  // round's counts, by the round's parity (at most two rounds in flight). Under round_mu_.
  struct round_state {
    std::size_t prepared = 0, checked = 0, done = 0;
    std::int64_t now_us = 0;
  };
  std::array<round_state, 2> round_state_{};
  std::uint64_t dispatched_ = 0;  // rounds handed out (written under round_mu_, by the loop)
  std::uint64_t finished_ = 0;    // rounds accounted for (loop thread only)
  bool workers_stop_ = false;
  double poll_s_ = 0, workers_wait_s_ = 0;                     // loop thread only
  std::uint64_t rounds_ = 0, overlapped_ = 0, conflicts_ = 0;  // loop thread only
  double largest_share_sum_ = 0;                               // loop thread only

  // The brokers' high watermarks: asked by marks_thread_ on a consumer of its own (a frozen broker
  // blocks the question for socket.timeout.ms, whatever its timeout: never on the loop), handed
  // to the loop through marks_answered_ (a new generation: the loop copies it into broker_high_).
  std::unique_ptr<kafka::consumer> marks_consumer_;  // marks_thread_ only
  std::thread marks_thread_;
  std::mutex marks_mu_;  // guards the three below
  std::condition_variable marks_cv_;
  bool marks_stop_ = false;
  std::vector<std::int32_t> marks_partitions_;           // what to ask (the loop's partitions_)
  std::map<std::int32_t, std::int64_t> marks_answered_;  // the brokers' last answers
  std::atomic<std::uint64_t> marks_generation_{0};
  std::map<std::int32_t, std::int64_t> broker_high_;  // loop thread: marks_answered_ as of marks_seen_
  std::uint64_t marks_seen_ = 0;                      // loop thread

  // Read by other threads.
  std::atomic<bool> caught_up_to_start_{false};
  std::atomic<std::int64_t> lag_events_{0};
  std::atomic<std::int64_t> reflects_as_of_us_{0};  // the copy held everything produced before this time
  std::atomic<std::uint64_t> applied_total_{0}, stale_total_{0}, dlq_total_{0};
  std::atomic<std::uint64_t> consumer_restarts_{0};
};

// Read side helpers over a replica's store (any thread).
struct item {
  std::string key;
  std::uint64_t version = 0;
  std::string value;  // projected JSON
};

// The live (not deleted) record of `key`; errc::not_found when absent or deleted.
std::error_code lookup(const store::kv& kv, std::string_view key, item& out);
// Up to `limit` live items with keys strictly after `after` (empty: from the start), in key order.
// `more` tells whether a further page may exist.
std::error_code scan(const store::kv& kv, std::string_view after, std::size_t limit, std::vector<item>& out,
                     bool& more);

}  // namespace datashare::sidecar::replica
