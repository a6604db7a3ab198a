#include "sidecar/replica/replica.h"

#include <algorithm>
#include <iostream>
#include <thread>

#include "common/clock.h"
#include "common/memory.h"
#include "sidecar/event/cloudevents.h"
#include "sidecar/replica/layout.h"

namespace datashare::sidecar::replica {
namespace {

std::int64_t now_us() {
  return common::wall_now_us();
}

// Makes a broker call (`call(timeout)`) in slices of at most replica::kStartSlice until it
// answers, fails with something else than a timeout, `budget` is spent, or `stop` is set
// (kErrInterrupted). librdkafka's calls take their timeout as a whole and cannot be interrupted.
template <typename Call>
std::error_code sliced(const std::atomic<bool>* stop, std::chrono::milliseconds budget, Call&& call) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  for (;;) {
    if (stop != nullptr && stop->load()) return kafka::make_error(kafka::kErrInterrupted);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto slice = stop == nullptr ? budget : std::clamp(left, std::chrono::milliseconds(1), replica::kStartSlice);
    const auto slice_end = std::min(std::chrono::steady_clock::now() + slice, deadline);
    auto ec = call(slice);
    if (ec != kafka::make_error(kafka::kErrTimedOut) && ec != kafka::make_error(kafka::kErrTransport)) return ec;
    if (stop == nullptr || std::chrono::steady_clock::now() >= deadline) return ec;
    // A call that failed before its slice was over (no connection yet) is not repeated at once.
    while (!stop->load() && std::chrono::steady_clock::now() < slice_end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

}  // namespace

replica::replica(config::subscribe_spec spec, std::unique_ptr<store::kv> kv, kafka::client_factory& kafka,
                 metrics::replica_probe probe, replica_options options)
    : spec_(std::move(spec)), kv_(std::move(kv)), kafka_(kafka), probe_(probe), options_(options), applier_(spec_) {}

// One worker of the parallel apply: its partitions' messages and plan of each of the two rounds
// that may be in flight (by the round's parity; buffers kept from round to round).
struct replica::worker {
  enum outcome_t { written, failed };
  struct slot {
    std::vector<kafka::message> messages;
    std::size_t count = 0;  // messages[0, count) are this round's
    plan p;
    plan redo;                // conflicted: the plan decided again in turn (p stays as the others read it)
    observations seen;        // the written plan's propagation times, bucketed by the worker
    bool member = false;      // has messages in the round
    bool prepared = false;    // p was decided (read by the others once every worker has)
    bool conflicted = false;  // p writes a key that another worker's plan of the round writes too
    bool resolved = false;    // conflicted, and decided again and written (or failed) in turn
    outcome_t outcome = written;
    std::string why;  // failed: what
    std::span<const kafka::message> round() const { return {messages.data(), count}; }
    const plan& applied() const { return conflicted ? redo : p; }
  };
  std::array<slot, 2> slots;
  std::size_t index = 0;
  // Its partitions' counters as written by its own rounds: the loop's partition_totals_ lag
  // behind while rounds are in flight. Set from them by the loop when no round is in flight.
  std::map<std::int32_t, totals> counters;
  // A write of this worker failed: it writes nothing more (its offsets would skip the failed
  // messages) until the loop has drained the rounds and rewound. Reset with `counters`.
  bool broken = false;
  std::vector<const plan*> earlier;  // the other workers' plans of the round before (prepare)
  std::thread thread;
};

replica::~replica() {
  stop_marks();
  std::int64_t newest = 0;
  std::string why;
  (void)drain(newest, why);
  {
    std::lock_guard lock(round_mu_);
    workers_stop_ = true;
  }
  round_cv_.notify_all();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

std::error_code replica::start(std::string& error, const std::atomic<bool>* stop) {
  consumer_ = kafka_.make_consumer(spec_.group, error);
  if (!consumer_) return kafka::make_error(-1);  // RD_KAFKA_RESP_ERR__FAIL
  partitions_.clear();
  if (auto ec = sliced(stop, options_.request_timeout, [&](std::chrono::milliseconds timeout) {
        partitions_.clear();
        return consumer_->partitions(spec_.topic, timeout, partitions_);
      })) {
    error = "topic " + spec_.topic + ": " + ec.message();
    return ec;
  }
  std::map<std::int32_t, std::int64_t> stored;
  if (auto ec = load_offsets(*kv_, stored)) {
    error = "cannot read the stored offsets: " + ec.message();
    return ec;
  }
  answered_at_us_ = now_us();  // the start's own questions below are the first answers
  for (auto p : partitions_) {
    auto it = stored.find(p);
    positions_[p] = it == stored.end() ? 0 : it->second;
    std::int64_t high = 0;
    if (auto ec = sliced(stop, options_.request_timeout, [&](std::chrono::milliseconds timeout) {
          return consumer_->query_high_watermark(spec_.topic, p, timeout, high);
        })) {
      error = "high watermark of " + spec_.topic + "[" + std::to_string(p) + "]: " + ec.message();
      return ec;
    }
    start_high_[p] = high;
  }
  if (auto ec = assign_stored()) {
    error = "assign " + spec_.topic + ": " + ec.message();
    return ec;
  }
  // No data record at all: no key has a stored version until this run writes one.
  std::vector<store::entry> any;
  const char data_begin[] = {kDataPrefix}, data_end[] = {static_cast<char>(kDataPrefix + 1)};
  if (auto ec = kv_->scan({data_begin, 1}, {data_end, 1}, 1, any)) {
    error = "cannot read the store: " + ec.message();
    return ec;
  }
  fresh_.reset();
  if (any.empty()) {
    std::size_t events = 0;  // at most as many keys as events below the high watermarks
    for (const auto& [p, high] : start_high_) events += static_cast<std::size_t>(std::max<std::int64_t>(high, 0));
    fresh_ = std::make_unique<written_keys>(events);
    kv_->expect_new_keys(true);  // until caught up: lookups of absent keys are the filter's
  }
  last_partition_check_ = last_flush_ = last_progress_ = std::chrono::steady_clock::now();
  // The dead-letter topic: nobody else may have created it. A failure here is not fatal (the
  // operator or an administrator may create it; poison events then wait for it).
  if (auto admin = kafka_.make_admin(error)) {
    std::string detail;
    if (auto ec = sliced(stop, options_.request_timeout, [&](std::chrono::milliseconds timeout) {
          return admin->ensure_topic(dlq_topic(), 1, {}, timeout, detail);
        })) {
      std::cerr << "datashare-sidecar: policy " << spec_.policy << ": cannot create " << dlq_topic() << ": "
                << ec.message() << " " << detail << "\n";
    }
  }
  if (stop != nullptr && stop->load()) {
    error = "stopping";
    return kafka::make_error(kafka::kErrInterrupted);
  }
  // The single counter keys of a store written before the counters were per partition.
  if (auto ec = migrate_counters(*kv_, partitions_.front())) {
    error = "cannot move the counters to per-partition keys: " + ec.message();
    return ec;
  }
  partition_totals_.clear();
  for (auto p : partitions_) {
    partition_totals_[p] = {load_counter(*kv_, kAppliedCounter, p), load_counter(*kv_, kStaleCounter, p),
                            load_counter(*kv_, kDlqCounter, p)};
  }
  if (options_.broker_watermark_interval.count() > 0 && !marks_thread_.joinable()) {
    // Not fatal: without it the cached watermarks alone tell the lag, as before.
    if (auto marks = kafka_.make_consumer(spec_.group, error)) {
      marks_consumer_ = std::move(marks);
      {
        std::lock_guard lock(marks_mu_);
        marks_partitions_ = partitions_;
        marks_stop_ = false;
      }
      marks_thread_ = std::thread([this] { marks_loop(); });
    } else {
      std::cerr << "datashare-sidecar: policy " << spec_.policy
                << ": no consumer to ask the brokers' high watermarks: " << error << "\n";
    }
  }
  error.clear();
  applied_total_ = load_counter(*kv_, kAppliedCounter);
  stale_total_ = load_counter(*kv_, kStaleCounter);
  dlq_total_ = load_counter(*kv_, kDlqCounter);
  update_status(now_us(), 0);
  return {};
}

void replica::marks_loop() {
  // The question's wait is short (request_timeout at most, and the interval), but librdkafka may
  // hold it for socket.timeout.ms on a frozen broker: stop_marks() then waits that long.
  const auto timeout = std::min(options_.request_timeout, options_.broker_watermark_interval);
  std::unique_lock lock(marks_mu_);
  while (!marks_stop_) {
    auto parts = marks_partitions_;
    lock.unlock();
    std::map<std::int32_t, std::int64_t> answered;
    for (auto p : parts) {
      std::int64_t high = -1;
      if (!marks_consumer_->query_high_watermark(spec_.topic, p, timeout, high) && high >= 0) answered[p] = high;
    }
    lock.lock();
    // A partition the brokers did not answer for keeps its last figure (a figure only lags).
    for (const auto& [p, high] : answered) marks_answered_[p] = high;
    if (!answered.empty()) marks_generation_.fetch_add(1, std::memory_order_release);
    marks_cv_.wait_for(lock, options_.broker_watermark_interval, [this] { return marks_stop_; });
  }
}

void replica::stop_marks() {
  {
    std::lock_guard lock(marks_mu_);
    marks_stop_ = true;
  }
  marks_cv_.notify_all();
  if (marks_thread_.joinable()) marks_thread_.join();
}

void replica::rewind(const char* why) {
  // The rounds still in flight are waited for: the stored offsets are then exact (a worker's
  // failure leaves its partitions where they were, which is what a rewind wants).
  std::int64_t newest = 0;
  std::string ignored;
  (void)drain(newest, ignored);
  std::cerr << "datashare-sidecar: policy " << spec_.policy << ": " << why << "; rewinding to the stored offsets\n";
  std::this_thread::sleep_for(options_.retry_backoff);
  (void)assign_stored();
}

std::error_code replica::assign_stored() {
  std::vector<kafka::partition_offset> start;
  start.reserve(positions_.size());
  for (const auto& [p, off] : positions_) start.push_back({p, off == 0 ? kafka::kOffsetBeginning : off});
  return consumer_->assign(spec_.topic, start);
}

bool replica::settle() {
  std::int64_t newest = 0;
  std::string why;
  if (!drain(newest, why)) return true;
  rewind(why.c_str());
  return false;
}

void replica::check_partitions() {
  if (!settle()) return;  // the positions must be the stored ones before reassigning
  std::vector<std::int32_t> now;
  // A failed look (broker unreachable) is retried at the next interval; the stream goes on. The
  // wait is short: this thread also applies, and stops.
  auto timeout = std::min<std::chrono::milliseconds>(options_.request_timeout, std::chrono::seconds(2));
  if (consumer_->partitions(spec_.topic, timeout, now)) return;
  std::vector<std::int32_t> added;
  for (auto p : now) {
    if (positions_.count(p) == 0) added.push_back(p);
  }
  if (added.empty()) return;
  for (auto p : added) {
    partitions_.push_back(p);
    positions_[p] = 0;   // a new partition: everything in it is new
    start_high_[p] = 0;  // and /readyz's start bar does not wait for it
  }
  {
    std::lock_guard lock(marks_mu_);
    marks_partitions_ = partitions_;
  }
  std::cerr << "datashare-sidecar: policy " << spec_.policy << ": " << added.size() << " partition(s) added to "
            << spec_.topic << " (now " << positions_.size() << "); reading them from the beginning\n";
  // Everything polled so far is written, so the stored positions are exact: reassigning the
  // whole set loses nothing and applies nothing twice.
  if (auto ec = assign_stored()) rewind(("assign after new partitions: " + ec.message()).c_str());
}

void replica::restart_consumer() {
  if (!settle()) return;  // the positions must be the stored ones before reassigning
  std::cerr << "datashare-sidecar: policy " << spec_.policy << ": the consumer of " << spec_.topic
            << " handed out nothing for " << options_.stall_timeout.count() << " ms while the copy is "
            << lag_events_.load() << " events behind; replacing it, from the stored offsets\n";
  std::string error;
  auto fresh = kafka_.make_consumer(spec_.group, error);
  if (!fresh) {
    std::cerr << "datashare-sidecar: policy " << spec_.policy << ": a new consumer: " << error << "\n";
    return;  // the old one stays; tried again after another stall_timeout
  }
  consumer_ = std::move(fresh);
  ++consumer_restarts_;
  probe_.consumer_restarts->Increment();
  if (auto ec = assign_stored()) rewind(("assign after replacing the consumer: " + ec.message()).c_str());
}

bool replica::send_to_dlq(const plan& p) {
  std::lock_guard lock(dlq_mu_);  // the workers of a round, each with its poison
  std::string error;
  if (!dlq_) {
    dlq_ = kafka_.make_producer(
        false,
        [this](const kafka::delivery& d) {
          if (d.error) dlq_failures_.fetch_add(1);
        },
        error);
    if (!dlq_) {
      std::cerr << "datashare-sidecar: policy " << spec_.policy << ": " << error << "\n";
      return false;
    }
  }
  dlq_failures_ = 0;
  const std::string topic = dlq_topic();
  for (const auto& [m, reason] : p.poison) {
    auto headers = m->headers;
    headers.push_back({std::string(event::kDlqReasonHeader), reason});
    headers.push_back(
        {"datashare_dlq_source", m->topic + "/" + std::to_string(m->partition) + "/" + std::to_string(m->offset)});
    std::optional<std::string_view> key, value;
    if (m->key) key = *m->key;
    if (m->value) value = *m->value;
    std::error_code ec;
    for (int tries = 0; tries < 100; ++tries) {
      ec = dlq_->produce(topic, key, value, headers, m->timestamp_ms, 0);
      if (ec != kafka::make_error(kafka::kErrQueueFull)) break;
      dlq_->poll(std::chrono::milliseconds(10));
    }
    if (ec) {
      std::cerr << "datashare-sidecar: policy " << spec_.policy << ": dead-letter produce: " << ec.message() << "\n";
      return false;
    }
  }
  if (auto ec = dlq_->flush(options_.request_timeout); ec || dlq_failures_.load() != 0) return false;
  return true;
}

void replica::run_once() {
  const auto poll_start = std::chrono::steady_clock::now();
  (void)consumer_->poll(options_.poll_timeout, options_.max_batch, batch_);  // replaces batch_, reusing it
  poll_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - poll_start).count();
  const bool polled = !batch_.empty();
  std::int64_t now = now_us();
  std::int64_t newest_applied = 0;
  std::string why;
  if (polled && options_.pipeline && batch_.size() >= options_.max_batch) {
    // Applied by the workers while the next batch is polled. Rounds already done are accounted
    // for now (the status follows); a third round waits for the oldest (its buffers).
    while (finished_ < dispatched_ && (dispatched_ - finished_ >= 2 || oldest_done())) {
      if (finish_oldest(newest_applied, why)) {
        rewind(why.c_str());
        return;
      }
    }
    dispatch(now);
  } else {
    // Writes stay in order: the rounds in flight are written (or rewound) before this batch is
    // decided.
    if (drain(newest_applied, why)) {
      rewind(why.c_str());
      return;
    }
    // A batch smaller than max_batch: the stream is not saturated, and a hand-off would only
    // add latency.
    if (polled && apply_inline(batch_, inline_plan_, now, newest_applied, why)) {
      rewind(why.c_str());
      return;
    }
  }
  update_status(now, newest_applied);
  // The bootstrap is over; the workers share the filter, so only between rounds.
  if (fresh_ && caught_up_to_start_.load() && finished_ == dispatched_) {
    fresh_.reset();
    kv_->expect_new_keys(false);  // every key is looked up in the store from now on
    // The filter and the staged table files are gone: their pages back to the kernel (P7).
    release_free_memory();
  }
  auto steady = std::chrono::steady_clock::now();
  if (polled || lag_events_.load() == 0) last_progress_ = steady;
  if (options_.stall_timeout.count() > 0 && steady - last_progress_ >= options_.stall_timeout) {
    last_progress_ = steady;
    restart_consumer();
    return;
  }
  if (steady - last_partition_check_ >= options_.partition_check_interval) {
    last_partition_check_ = steady;
    check_partitions();
  }
  if (polled) unflushed_ = true;
  if (unflushed_ && steady - last_flush_ >= options_.store_flush_interval) {
    last_flush_ = steady;
    unflushed_ = false;
    if (auto ec = kv_->flush(false)) {
      std::cerr << "datashare-sidecar: policy " << spec_.policy << ": store flush: " << ec.message() << "\n";
    }
  }
  if (steady - last_commit_ >= options_.commit_interval) {
    last_commit_ = steady;
    // Only what is written: the rounds in flight are not in positions_ yet.
    std::vector<kafka::partition_offset> offsets;
    for (const auto& [p, off] : positions_) {
      if (off > 0) offsets.push_back({p, off});
    }
    if (!offsets.empty()) consumer_->commit(spec_.topic, offsets);
  }
}

std::error_code replica::apply_inline(std::span<const kafka::message> messages, plan& p, std::int64_t now,
                                      std::int64_t& newest_applied_us, std::string& why) {
  // prepare() adds the batch's keys to fresh_ before anything of it is written: a key may be in
  // the filter and not in the store (a failed write), never the other way round.
  if (auto ec = applier_.prepare(messages, *kv_, now, p, {}, &partition_totals_, fresh_.get())) {
    why = "store read failed: " + ec.message();
    return ec;
  }
  if (!p.poison.empty() && !send_to_dlq(p)) {
    why = "the dead-letter topic did not take the poison events";
    return kafka::make_error(-1);  // RD_KAFKA_RESP_ERR__FAIL
  }
  if (auto ec = kv_->write(p.batch, options_.sync_writes)) {
    why = "store write failed: " + ec.message();
    return ec;
  }
  bucket(p, inline_seen_);
  account(messages, p, inline_seen_, newest_applied_us);
  return {};
}

void replica::bucket(const plan& p, observations& out) const {
  const auto& bounds = probe_.propagation_bounds;
  out.buckets.assign(bounds.size() + 1, 0.0);
  out.sum_s = 0;
  for (auto us : p.propagation_us) {
    const double s = static_cast<double>(us) / 1e6;
    // The first bound >= s, as Histogram::Observe picks it (a value on a bound is in that bucket).
    out.buckets[static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), s) - bounds.begin())] += 1;
    out.sum_s += s;
  }
}

void replica::account(std::span<const kafka::message> messages, const plan& p, const observations& seen,
                      std::int64_t& newest_applied_us) {
  // A partition's messages come in runs, in offset order: one map update per run, not per event.
  for (std::size_t i = 0; i < messages.size();) {
    const std::int32_t partition = messages[i].partition;
    std::int64_t next = messages[i].offset + 1;
    for (++i; i < messages.size() && messages[i].partition == partition; ++i) {
      next = std::max(next, messages[i].offset + 1);
    }
    auto& pos = positions_[partition];
    pos = std::max(pos, next);
  }
  probe_.applied->Increment(static_cast<double>(p.applied));
  probe_.skipped_stale->Increment(static_cast<double>(p.stale));
  probe_.dlq->Increment(static_cast<double>(p.poison.size()));
  if (!p.propagation_us.empty()) probe_.propagation->ObserveMultiple(seen.buckets, seen.sum_s);
  for (const auto& [partition, delta] : p.counted) {
    auto& t = partition_totals_[partition];
    t.applied += delta.applied;
    t.stale += delta.stale;
    t.dlq += delta.dlq;
  }
  applied_total_ += p.applied;
  stale_total_ += p.stale;
  dlq_total_ += p.poison.size();
  newest_applied_us = std::max(newest_applied_us, p.newest_event_time_us);
}

void replica::dispatch(std::int64_t now) {
  if (workers_.empty()) {
    std::size_t n = options_.apply_workers != 0 ? options_.apply_workers
                                                : std::min(partitions_.size(), replica_options::kMaxWorkers);
    for (std::size_t i = 0; i < std::max<std::size_t>(n, 1); ++i) {
      workers_.push_back(std::make_unique<worker>());
      workers_.back()->index = i;
    }
    for (auto& w : workers_) w->thread = std::thread([this, wp = w.get()] { worker_loop(*wp); });
  }
  if (finished_ == dispatched_) {
    // No round in flight: every worker waits for this one, and the counters it wrote are in
    // partition_totals_ (with what the loop thread applied itself since).
    for (auto& w : workers_) {
      w->counters = partition_totals_;
      w->broken = false;
    }
  } else {
    ++overlapped_;
  }
  // The slot of this round's parity was last used by the round before the one in flight, which
  // is accounted for (run_once keeps at most two in flight).
  const std::uint64_t r = dispatched_ + 1;
  for (auto& w : workers_) w->slots[r & 1].count = 0;
  // Each message to its partition's worker, in consumption order (a partition's order is kept).
  // The messages are exchanged, not copied: batch_ gets the worker's older ones, whose buffers
  // the next poll reuses.
  for (auto& m : batch_) {
    auto& slot = workers_[worker_of(m.partition)]->slots[r & 1];
    if (slot.count == slot.messages.size()) slot.messages.emplace_back();
    std::swap(slot.messages[slot.count++], m);
  }
  std::size_t largest = 0;  // the busiest worker's events
  {
    // Under the lock: the workers read the slots once they see the round.
    std::lock_guard lock(round_mu_);
    for (auto& w : workers_) {
      auto& slot = w->slots[r & 1];
      slot.member = slot.count != 0;
      slot.prepared = slot.conflicted = slot.resolved = false;
      slot.outcome = worker::written;
      slot.why.clear();
      largest = std::max(largest, slot.count);
    }
    round_state_[r & 1] = {0, 0, 0, now};
    dispatched_ = r;
  }
  ++rounds_;
  largest_share_sum_ += static_cast<double>(largest) / static_cast<double>(std::max<std::size_t>(batch_.size(), 1));
  round_cv_.notify_all();
}

void replica::worker_loop(worker& w) {
  const std::size_t n = workers_.size();
  std::uint64_t r = 0;  // the round this worker is at
  std::unique_lock lock(round_mu_);
  for (;;) {
    round_cv_.wait(lock, [&] { return workers_stop_ || dispatched_ > r; });
    if (workers_stop_) return;
    ++r;
    round_state& round = round_state_[r & 1];
    worker::slot& mine = w.slots[r & 1];
    const std::int64_t now = round.now_us;
    lock.unlock();
    // A failure of this round's part leaves the worker broken until the rewind.
    auto fail = [&](std::string why) {
      mine.outcome = worker::failed;
      mine.why = std::move(why);
      w.broken = true;
    };
    // Decides this round's messages into `p`, counting the plans in `in_flight` as stored.
    auto decide = [&](plan& p, std::span<const plan* const> in_flight) {
      auto ec = applier_.prepare(mine.round(), *kv_, now, p, in_flight, &w.counters, fresh_.get());
      if (ec) fail("store read failed: " + ec.message());
      return !ec;
    };
    // Writes a plan of this round (poison dead-lettered first), and counts it in the worker's own
    // counters.
    auto write = [&](plan& p) {
      if (!p.poison.empty() && !send_to_dlq(p)) {
        fail("the dead-letter topic did not take the poison events");
      } else if (auto ec = kv_->write(p.batch, options_.sync_writes)) {
        fail("store write failed: " + ec.message());
      } else {
        bucket(p, mine.seen);  // here, in parallel, rather than on the loop thread
        for (const auto& [partition, delta] : p.counted) {
          auto& t = w.counters[partition];
          t.applied += delta.applied;
          t.stale += delta.stale;
          t.dlq += delta.dlq;
        }
      }
    };
    if (mine.member) {
      if (w.broken) {
        fail("an earlier write of the worker failed");
      } else {
        // The other workers' plans of the round before may still be being written (this worker
        // has written its own): their versions count as stored. The loop changes neither the
        // filter nor those plans while rounds are in flight, and their workers change them only
        // after every worker has decided this round.
        w.earlier.clear();
        for (const auto& other : workers_) {
          if (other.get() != &w) w.earlier.push_back(&other->slots[(r - 1) & 1].p);
        }
        mine.prepared = decide(mine.p, w.earlier);
      }
    }
    lock.lock();
    // Every worker decided this round, so every write of the round before is done (a worker
    // decides a round only after its write of the one before).
    if (++round.prepared == n) round_cv_.notify_all();
    round_cv_.wait(lock, [&] { return round.prepared == n; });
    lock.unlock();
    if (mine.prepared) {
      // A key written by another worker's plan too (a key that moved to a partition added later):
      // both plans were decided against the same stored version. The relation is symmetric: both
      // see it.
      for (const auto& other : workers_) {
        const worker::slot& theirs = other->slots[r & 1];
        if (other.get() == &w || !theirs.member || !theirs.prepared) continue;
        for (std::size_t i = 0; i < mine.p.batch.size() && !mine.conflicted; ++i) {
          auto op = mine.p.batch[i];
          if (!op.key.empty() && op.key[0] == kDataPrefix && theirs.p.written.find(op.key.substr(1)) != 0) {
            mine.conflicted = true;
          }
        }
      }
    }
    lock.lock();
    if (++round.checked == n || mine.conflicted) round_cv_.notify_all();
    if (mine.conflicted) {
      // In the workers' order, each conflicted plan after the ones before it are written, once
      // every worker has checked (nobody reads p any more; the new plan is decided into redo).
      round_cv_.wait(lock, [&] {
        if (round.checked != n) return false;
        for (std::size_t j = 0; j < w.index; ++j) {
          const worker::slot& before = workers_[j]->slots[r & 1];
          if (before.conflicted && !before.resolved) return false;
        }
        return true;
      });
      lock.unlock();
      // Against the store alone: every write of the round before is done, and of this round the
      // earlier conflicted plans are the only ones that may write this plan's keys.
      if (decide(mine.redo, {})) write(mine.redo);
      lock.lock();
      mine.resolved = true;
      round_cv_.notify_all();
      lock.unlock();
    } else {
      lock.unlock();
      if (mine.prepared) write(mine.p);
    }
    lock.lock();
    if (++round.done == n) done_cv_.notify_all();
  }
}

bool replica::oldest_done() {
  std::lock_guard lock(round_mu_);
  return round_state_[(finished_ + 1) & 1].done == workers_.size();
}

std::error_code replica::finish_oldest(std::int64_t& newest_applied_us, std::string& why) {
  if (finished_ == dispatched_) return {};
  const std::uint64_t r = ++finished_;
  {
    const auto wait_start = std::chrono::steady_clock::now();
    std::unique_lock lock(round_mu_);
    done_cv_.wait(lock, [&] { return round_state_[r & 1].done == workers_.size(); });
    workers_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
  }
  std::error_code first;
  for (auto& w : workers_) {
    const worker::slot& slot = w->slots[r & 1];
    if (!slot.member) continue;
    if (slot.conflicted) ++conflicts_;
    if (slot.outcome == worker::written) {
      account(slot.round(), slot.applied(), slot.seen, newest_applied_us);
    } else if (!first) {
      why = slot.why;
      first = kafka::make_error(-1);  // RD_KAFKA_RESP_ERR__FAIL
    }
  }
  return first;
}

std::error_code replica::drain(std::int64_t& newest_applied_us, std::string& why) {
  std::error_code first;
  while (finished_ != dispatched_) {
    std::string what;
    if (auto ec = finish_oldest(newest_applied_us, what); ec && !first) {
      first = ec;
      why = what;
    }
  }
  return first;
}

void replica::update_status(std::int64_t now, std::int64_t newest_applied_us) {
  std::int64_t lag = 0;
  bool at_start_marks = true;
  if (auto generation = marks_generation_.load(std::memory_order_acquire); generation != marks_seen_) {
    std::lock_guard lock(marks_mu_);
    broker_high_ = marks_answered_;
    marks_seen_ = generation;
  }
  for (const auto& [p, pos] : positions_) {
    // The cached watermark comes from the consumer's fetches, which may have stopped; the
    // brokers' figure, asked beside the loop, is at most broker_watermark_interval old.
    std::int64_t high = std::max(consumer_->cached_high_watermark(spec_.topic, p), start_high_[p]);
    if (auto b = broker_high_.find(p); b != broker_high_.end()) high = std::max(high, b->second);
    lag += std::max<std::int64_t>(0, high - pos);
    if (pos < start_high_[p]) at_start_marks = false;
  }
  if (at_start_marks) caught_up_to_start_ = true;
  lag_events_ = lag;
  if (const std::int64_t answered = consumer_->last_answer_us(spec_.topic); answered > answered_at_us_) {
    answered_at_us_ = std::min(answered, now);
  }
  if (lag == 0) {
    // At the watermarks: the copy holds everything produced up to the brokers' last answer (or
    // the newest event applied, if later), not necessarily up to now.
    reflects_as_of_us_ = std::max({reflects_as_of_us_.load(), answered_at_us_, std::min(now, newest_applied_us)});
  } else if (newest_applied_us > reflects_as_of_us_.load()) {
    // Behind: the copy holds what was produced up to the newest event applied (an estimate that
    // errs on the stale side).
    reflects_as_of_us_ = newest_applied_us;
  }
  auto s = status();
  probe_.lag_events->Set(static_cast<double>(s.lag_events));
  probe_.lag_seconds->Set(static_cast<double>(s.staleness_ms) / 1000.0);
  if (now - store_probed_us_ >= 1'000'000) {
    store_probed_us_ = now;
    const std::string bytes = kv_->property("datashare.read-index.bytes");
    probe_.read_index_bytes->Set(bytes.empty() ? 0.0 : std::stod(bytes));
  }
}

void replica::run(const std::atomic<bool>& stop) {
  while (!stop.load()) run_once();
}

replica_status replica::status() const {
  replica_status s;
  s.caught_up_to_start = caught_up_to_start_.load();
  s.lag_events = lag_events_.load();
  std::int64_t as_of = reflects_as_of_us_.load();
  s.staleness_ms = as_of == 0 ? INT64_MAX / 1000 : std::max<std::int64_t>(0, (now_us() - as_of) / 1000);
  // A caught-up copy is as old as its brokers' last answer: within answer_tolerance (and two
  // polls) it counts as current. Beyond it they stopped answering, and the staleness is the time
  // since they last did.
  if (s.lag_events == 0 && s.staleness_ms <= options_.answer_tolerance.count() + 2 * options_.poll_timeout.count()) {
    s.staleness_ms = 0;
  }
  s.ready = s.caught_up_to_start && s.staleness_ms <= spec_.max_lag.count();
  s.applied_total = applied_total_.load();
  s.stale_total = stale_total_.load();
  s.dlq_total = dlq_total_.load();
  s.consumer_restarts = consumer_restarts_.load();
  return s;
}

std::error_code lookup(const store::kv& kv, std::string_view key, item& out) {
  std::string bytes;
  if (auto ec = kv.get(data_key(key), bytes)) return ec;
  auto r = decode_record(bytes);
  if (!r) return store::errc::corruption;
  if (r->deleted) return store::errc::not_found;
  out.key.assign(key);
  out.version = r->version;
  out.value.assign(r->value);
  return {};
}

std::error_code scan(const store::kv& kv, std::string_view after, std::size_t limit, std::vector<item>& out,
                     bool& more) {
  more = false;
  std::string begin = data_key(after);
  if (!after.empty()) begin.push_back('\0');  // strictly after
  const std::string end(1, static_cast<char>(kDataPrefix + 1));
  // Tombstones are skipped, so read in chunks until one live item more than the page is seen
  // (then there is a next page) or the data ends. Bounded: each chunk moves `begin` forward.
  std::size_t first = out.size();
  while (out.size() - first <= limit) {
    std::vector<store::entry> entries;
    std::size_t want = limit + 1 - (out.size() - first);
    if (auto ec = kv.scan(begin, end, want, entries)) return ec;
    for (const auto& [k, v] : entries) {
      auto r = decode_record(v);
      if (!r) return store::errc::corruption;
      if (r->deleted) continue;
      out.push_back({k.substr(1), r->version, std::string(r->value)});
    }
    if (entries.size() < want) break;
    begin = entries.back().first;
    begin.push_back('\0');
  }
  if (out.size() - first > limit) {
    more = true;
    out.resize(first + limit);
  }
  return {};
}

}  // namespace datashare::sidecar::replica
