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
// Threading: start() and run_once()/run() on one thread (the replica's); status(), store() and
// spec() from any thread. Owns its store, consumer and dead-letter producer.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
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
  bool sync_writes = false;  // see README: offsets travel with the data, a crash rewinds both
  // A store without a write-ahead log (the sidecar's RocksDB replica store) is flushed at least
  // this often while events are applied: the bound on what a crash rolls back (README). Each
  // flush makes a table file, compacted later (shorter: more compactions of a slow stream's small
  // files); a flush starts, the loop does not wait.
  std::chrono::milliseconds store_flush_interval{60000};
  // A full batch (max_batch events) is written on a thread of its own while the next one is
  // polled and decided; a smaller batch is written before run_once() returns.
  bool pipeline = true;
};

struct replica_status {
  bool caught_up_to_start = false;  // every partition reached the high watermark seen at start
  bool ready = false;               // caught up, and staleness within maxLag
  std::int64_t lag_events = 0;
  std::int64_t staleness_ms = 0;
  std::uint64_t applied_total = 0;  // persisted across restarts, like the data
  std::uint64_t stale_total = 0;
  std::uint64_t dlq_total = 0;
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
  // Where the loop's wall time went so far (benchmarks): in the consumer's poll (converting the
  // messages, and waiting when librdkafka's queue is empty) and waiting for the writer thread.
  struct loop_times {
    double poll_s = 0;
    double writer_wait_s = 0;
  };
  loop_times times() const { return {poll_s_, writer_wait_s_}; }
  const store::kv& store() const { return *kv_; }
  const config::subscribe_spec& spec() const { return spec_; }
  std::string dlq_topic() const { return spec_.topic + ".dlq"; }

 private:
  void rewind(const char* why);
  // Assigns every known partition at its stored position (the beginning when none is stored).
  std::error_code assign_stored();
  void check_partitions();
  bool send_to_dlq(const plan& p);
  void update_status(std::int64_t now_us, std::int64_t newest_applied_us);
  // The pipelined write: submit() hands plans_[i] to the writer thread; finish() waits for it and
  // accounts for it (positions, counters, metrics). finish() returns the write's error, after
  // which the caller rewinds; without a write in flight it returns no error.
  void submit(int i);
  std::error_code finish(std::int64_t& newest_applied_us);
  void writer_loop();

  config::subscribe_spec spec_;
  std::unique_ptr<store::kv> kv_;
  kafka::client_factory& kafka_;
  metrics::replica_probe probe_;
  replica_options options_;
  applier applier_;
  std::unique_ptr<kafka::consumer> consumer_;
  std::unique_ptr<kafka::producer> dlq_;
  std::atomic<int> dlq_failures_{0};

  // Loop-thread state.
  std::vector<std::int32_t> partitions_;
  std::map<std::int32_t, std::int64_t> positions_;   // next offset to apply, as stored
  std::map<std::int32_t, std::int64_t> start_high_;  // high watermarks seen at start
  std::chrono::steady_clock::time_point last_commit_{};
  std::chrono::steady_clock::time_point last_partition_check_{};
  std::chrono::steady_clock::time_point last_flush_{};
  bool unflushed_ = false;  // written since the last flush
  // Two batches and their plans, reused with their buffers: one polled and decided while the
  // other is written (pipeline).
  std::vector<kafka::message> batches_[2];
  plan plans_[2];
  int current_ = 0;
  int in_flight_ = -1;  // the index being written, or -1
  // Each partition's persistent counters as stored (written batches only).
  std::map<std::int32_t, totals> partition_totals_;
  // While a replica that started on an empty store bootstraps: every key it has written (or is
  // writing), so that the version lookup of a key never written is skipped (applier::prepare).
  // Dropped once caught up to the start's high watermarks.
  std::unique_ptr<written_keys> fresh_;

  std::thread writer_;
  std::mutex writer_mu_;
  std::condition_variable writer_cv_;
  const store::write_batch* writer_job_ = nullptr;
  bool writer_done_ = false;
  bool writer_stop_ = false;
  std::error_code writer_result_;
  double poll_s_ = 0, writer_wait_s_ = 0;  // loop thread only

  // Read by other threads.
  std::atomic<bool> caught_up_to_start_{false};
  std::atomic<std::int64_t> lag_events_{0};
  std::atomic<std::int64_t> reflects_as_of_us_{0};  // the copy held everything produced before this time
  std::atomic<std::uint64_t> applied_total_{0}, stale_total_{0}, dlq_total_{0};
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
