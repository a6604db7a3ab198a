#include "sidecar/replica/replica.h"

#include <algorithm>
#include <iostream>
#include <thread>

#include "sidecar/event/cloudevents.h"
#include "sidecar/replica/layout.h"

namespace datashare::sidecar::replica {
namespace {

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
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

replica::~replica() {
  std::int64_t newest = 0;
  (void)finish(newest);
  {
    std::lock_guard lock(writer_mu_);
    writer_stop_ = true;
  }
  writer_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void replica::writer_loop() {
  std::unique_lock lock(writer_mu_);
  for (;;) {
    writer_cv_.wait(lock, [this] { return writer_stop_ || writer_job_ != nullptr; });
    if (writer_job_ == nullptr) return;
    const store::write_batch* job = writer_job_;
    lock.unlock();
    auto ec = kv_->write(*job, options_.sync_writes);
    lock.lock();
    writer_job_ = nullptr;
    writer_result_ = ec;
    writer_done_ = true;
    writer_cv_.notify_all();
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
  }
  last_partition_check_ = last_flush_ = std::chrono::steady_clock::now();
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
  error.clear();
  applied_total_ = load_counter(*kv_, kAppliedCounter);
  stale_total_ = load_counter(*kv_, kStaleCounter);
  dlq_total_ = load_counter(*kv_, kDlqCounter);
  update_status(now_us(), 0);
  return {};
}

void replica::rewind(const char* why) {
  // A write still in flight is waited for: the stored offsets are then exact (its own failure
  // leaves them where they were, which is what a rewind wants).
  std::int64_t newest = 0;
  (void)finish(newest);
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

void replica::check_partitions() {
  std::int64_t newest = 0;
  if (auto ec = finish(newest)) {  // the positions must be the stored ones before reassigning
    rewind(("store write failed: " + ec.message()).c_str());
    return;
  }
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
  std::cerr << "datashare-sidecar: policy " << spec_.policy << ": " << added.size() << " partition(s) added to "
            << spec_.topic << " (now " << positions_.size() << "); reading them from the beginning\n";
  // Everything polled so far is written, so the stored positions are exact: reassigning the
  // whole set loses nothing and applies nothing twice.
  if (auto ec = assign_stored()) rewind(("assign after new partitions: " + ec.message()).c_str());
}

bool replica::send_to_dlq(const plan& p) {
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
  const int i = current_;
  auto& batch = batches_[i];
  const auto poll_start = std::chrono::steady_clock::now();
  (void)consumer_->poll(options_.poll_timeout, options_.max_batch, batch);  // replaces batch, reusing it
  poll_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - poll_start).count();
  std::int64_t now = now_us();
  std::int64_t newest_applied = 0;
  if (batch.empty()) {
    if (auto ec = finish(newest_applied)) {
      rewind(("store write failed: " + ec.message()).c_str());
      return;
    }
  } else {
    plan& p = plans_[i];
    // Each partition's counters before this batch: the stored ones plus the batch in flight.
    std::map<std::int32_t, totals> before = partition_totals_;
    const plan* other = nullptr;
    if (in_flight_ >= 0) {
      other = &plans_[in_flight_];
      for (const auto& [partition, delta] : other->counted) {
        auto& t = before[partition];
        t.applied += delta.applied;
        t.stale += delta.stale;
        t.dlq += delta.dlq;
      }
    }
    // prepare() adds the batch's keys to fresh_ before anything of it is written: a key may be
    // in the filter and not in the store (a failed write), never the other way round.
    if (auto ec = applier_.prepare(batch, *kv_, now, p, other, &before, fresh_.get())) {
      rewind(("store read failed: " + ec.message()).c_str());
      return;
    }
    if (!p.poison.empty() && !send_to_dlq(p)) {
      rewind("the dead-letter topic did not take the poison events");
      return;
    }
    // Writes stay in order: the previous batch is on disk before this one is written.
    if (auto ec = finish(newest_applied)) {
      rewind(("store write failed: " + ec.message()).c_str());
      return;
    }
    if (options_.pipeline && batch.size() >= options_.max_batch) {
      submit(i);  // written while the next batch is polled and decided
      current_ ^= 1;
    } else {
      submit(i);
      if (auto ec = finish(newest_applied)) {
        rewind(("store write failed: " + ec.message()).c_str());
        return;
      }
    }
  }
  update_status(now, newest_applied);
  if (fresh_ && caught_up_to_start_.load()) fresh_.reset();  // the bootstrap is over
  auto steady = std::chrono::steady_clock::now();
  if (steady - last_partition_check_ >= options_.partition_check_interval) {
    last_partition_check_ = steady;
    check_partitions();
  }
  if (!batch.empty()) unflushed_ = true;
  if (unflushed_ && steady - last_flush_ >= options_.store_flush_interval) {
    last_flush_ = steady;
    unflushed_ = false;
    if (auto ec = kv_->flush(false)) {
      std::cerr << "datashare-sidecar: policy " << spec_.policy << ": store flush: " << ec.message() << "\n";
    }
  }
  if (steady - last_commit_ >= options_.commit_interval) {
    last_commit_ = steady;
    std::vector<kafka::partition_offset> offsets;
    for (const auto& [p, off] : positions_) {
      if (off > 0) offsets.push_back({p, off});
    }
    if (!offsets.empty()) consumer_->commit(spec_.topic, offsets);
  }
}

void replica::submit(int i) {
  in_flight_ = i;
  if (!options_.pipeline || batches_[i].size() < options_.max_batch) {
    // Written here: a batch smaller than max_batch means the stream is not saturated, and a
    // hand-off to the writer thread would only add latency.
    auto ec = kv_->write(plans_[i].batch, options_.sync_writes);
    std::lock_guard lock(writer_mu_);
    writer_result_ = ec;
    writer_done_ = true;
    return;
  }
  if (!writer_.joinable()) writer_ = std::thread([this] { writer_loop(); });
  {
    std::lock_guard lock(writer_mu_);
    writer_done_ = false;
    writer_job_ = &plans_[i].batch;
  }
  writer_cv_.notify_all();
}

std::error_code replica::finish(std::int64_t& newest_applied_us) {
  if (in_flight_ < 0) return {};
  const int i = in_flight_;
  in_flight_ = -1;
  std::error_code ec;
  {
    const auto wait_start = std::chrono::steady_clock::now();
    std::unique_lock lock(writer_mu_);
    writer_cv_.wait(lock, [this] { return writer_done_; });
    ec = writer_result_;
    writer_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
  }
  if (ec) return ec;
  const plan& p = plans_[i];
  for (const auto& m : batches_[i]) {
    auto& pos = positions_[m.partition];
    pos = std::max(pos, m.offset + 1);
  }
  probe_.applied->Increment(static_cast<double>(p.applied));
  probe_.skipped_stale->Increment(static_cast<double>(p.stale));
  probe_.dlq->Increment(static_cast<double>(p.poison.size()));
  for (auto us : p.propagation_us) probe_.propagation->Observe(static_cast<double>(us) / 1e6);
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
  return {};
}

void replica::update_status(std::int64_t now, std::int64_t newest_applied_us) {
  std::int64_t lag = 0;
  bool at_start_marks = true;
  for (const auto& [p, pos] : positions_) {
    std::int64_t high = std::max(consumer_->cached_high_watermark(spec_.topic, p), start_high_[p]);
    lag += std::max<std::int64_t>(0, high - pos);
    if (pos < start_high_[p]) at_start_marks = false;
  }
  if (at_start_marks) caught_up_to_start_ = true;
  lag_events_ = lag;
  if (lag == 0) {
    reflects_as_of_us_ = now;
  } else if (newest_applied_us > reflects_as_of_us_.load()) {
    // Behind: the copy holds what was produced up to the newest event applied (an estimate that
    // errs on the stale side).
    reflects_as_of_us_ = newest_applied_us;
  }
  auto s = status();
  probe_.lag_events->Set(static_cast<double>(s.lag_events));
  probe_.lag_seconds->Set(static_cast<double>(s.staleness_ms) / 1000.0);
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
  // A caught-up copy is only as old as the loop's last look; don't count the poll interval.
  if (s.lag_events == 0 && s.staleness_ms <= 2 * options_.poll_timeout.count()) s.staleness_ms = 0;
  s.ready = s.caught_up_to_start && s.staleness_ms <= spec_.max_lag.count();
  s.applied_total = applied_total_.load();
  s.stale_total = stale_total_.load();
  s.dlq_total = dlq_total_.load();
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
