// datashare-sidecar-bench: the measuring side of bench/sidecar/run.sh (P1, P2, P3, P7).
//
//   produce         --bootstrap B --topic T --events N --keys K --value-bytes V [--partitions P]
//   apply           --bootstrap B --topic T --dir D [--sync] [--no-pipeline] [--wal] [--max-batch N]
//                   [--no-merge-memtables] [--workers N] [--settle] [--read-index auto|memory|none]
//                   [--rocksdb "name=value;..."] [--kafka "name=value;..."] [--stats]
//                   replica apply rate, in process
//   raw-latency     --bootstrap B --topic T --rate R --seconds S    librdkafka produce→consume
//   publish-latency --port P --metrics-port M --rate R --seconds S  sidecar PUT → replica applied
//   redis-load      --events N --keys K --value-bytes V             RESP SETs of the same data, to stdout
//   store-read      --dir D --keys K --value-bytes V --seconds S [--warmup S] [--rocksdb OPTS]
//                   point lookups/s in a replica store (filled first when D does not exist)
//                   (filled first when D is empty; no Kafka: the read path's store part alone)
//
// Keys are "key:%012d" (redis-benchmark's __rand_int__ format), values the JSON state of a
// product padded to about V bytes, with the contract's datashare_version and ce_time headers.
#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/memory.h"
#include "sidecar/event/cloudevents.h"
#include "sidecar/kafka/rdkafka_client.h"
#include "sidecar/metrics/metrics.h"
#include "sidecar/replica/layout.h"
#include "sidecar/replica/replica.h"
#include "sidecar/store/read_index.h"
#include "sidecar/store/rocksdb_kv.h"

namespace ds = datashare::sidecar;
using namespace std::chrono_literals;

namespace {

struct args {
  std::map<std::string, std::string> v;
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = v.find(k);
    return it == v.end() ? def : it->second;
  }
  long num(const std::string& k, long def) const { return v.count(k) != 0 ? std::stol(v.at(k)) : def; }
  bool flag(const std::string& k) const { return v.count(k) != 0; }
};

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string key_of(long i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "key:%012ld", i);
  return buf;
}

std::string value_of(const std::string& key, long i, long bytes) {
  nlohmann::json j{{"id", key}, {"name", ""}, {"price", i}};
  long pad = bytes - static_cast<long>(j.dump().size());
  j["name"] = std::string(static_cast<std::size_t>(std::max(0L, pad)), 'n');
  return j.dump();
}

ds::config::product_schema products() {
  ds::config::product_schema p;
  p.name = "products";
  p.namespace_name = "bench";
  p.key = "id";
  p.fields = {{"id", ds::config::field_type::string, false},
              {"name", ds::config::field_type::string, false},
              {"price", ds::config::field_type::number, false}};
  return p;
}

// `properties`: librdkafka properties "name=value;..." over the sidecar's (experiments).
std::unique_ptr<ds::kafka::client_factory> factory(const std::string& bootstrap, const std::string& properties = "") {
  ds::config::kafka_settings s;
  s.bootstrap_servers = bootstrap;
  std::stringstream in(properties);
  for (std::string item; std::getline(in, item, ';');) {
    auto eq = item.find('=');
    if (eq != std::string::npos) s.properties.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  return ds::kafka::make_rdkafka_factory(s);
}

int produce(const args& a) {
  auto f = factory(a.get("--bootstrap"));
  std::string error, detail;
  auto admin = f->make_admin(error);
  if (!admin || admin->ensure_topic(a.get("--topic"), static_cast<int>(a.num("--partitions", 3)), {}, 30s, detail)) {
    std::cerr << "cannot create topic: " << error << detail << "\n";
    return 1;
  }
  std::atomic<long> failed{0};
  auto p = f->make_producer(
      true,
      [&](const ds::kafka::delivery& d) {
        if (d.error) ++failed;
      },
      error);
  long events = a.num("--events", 1000000), keys = a.num("--keys", events), bytes = a.num("--value-bytes", 200);
  auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < events; ++i) {
    std::string key = key_of(i % keys);
    std::string value = value_of(key, i, bytes);
    std::vector<ds::kafka::header> h{{"datashare_version", std::to_string(i / keys + 1)},
                                     {"ce_time", ds::event::format_time(now_us())}};
    for (;;) {
      auto ec = p->produce(a.get("--topic"), key, value, h, 0, 0);
      if (ec == ds::kafka::make_error(ds::kafka::kErrQueueFull)) {
        p->poll(5ms);
        continue;
      }
      if (ec) {
        std::cerr << "produce: " << ec.message() << "\n";
        return 1;
      }
      break;
    }
  }
  if (p->flush(120s) || failed.load() != 0) {
    std::cerr << "flush failed or " << failed.load() << " deliveries failed\n";
    return 1;
  }
  std::printf("produced %ld events (%ld keys, ~%ld-byte values) in %.2f s\n", events, keys, bytes,
              seconds_since(start));
  return 0;
}

int apply(const args& a) {
  auto f = factory(a.get("--bootstrap"), a.get("--kafka"));
  std::string error;
  ds::store::rocksdb_options so;  // as the sidecar opens a replica's store (sidecar/main.cc)
  so.wal = a.flag("--wal");
  so.merge_memtables = !a.flag("--no-merge-memtables");
  // Sized as the sidecar sizes a replica's store (sidecar/main.cc): by this machine's memory.
  const auto memory = ds::store::store_memory_for(datashare::memory_limit(), 1);
  so.write_buffer_bytes = memory.replica_write_buffer;
  ds::store::set_block_cache_capacity(memory.block_cache);
  so.overrides = a.get("--rocksdb");  // e.g. "level0_file_num_compaction_trigger=8;max_bytes_for_level_base=..."
  auto kv = ds::store::open_rocksdb(a.get("--dir"), so, error);
  if (!kv) {
    std::cerr << error << "\n";
    return 1;
  }
  // readIndex (sidecar/main.cc): auto by default, as the sidecar's, its budget a quarter of this
  // machine's memory (or container's limit).
  const std::string read_index = a.get("--read-index", "auto");
  if (read_index != "none") {
    if (read_index != "auto" && read_index != "memory") {
      std::cerr << "--read-index: auto, memory or none\n";
      return 2;
    }
    ds::store::read_index_options ro;
    if (read_index == "auto") ro.budget = std::make_shared<ds::store::memory_budget>(memory.read_index_budget);
    ro.on_drop = [](std::size_t bytes, const std::string& why) {
      std::cerr << "read index dropped (" << bytes << " bytes): " << why << "\n";
    };
    kv = ds::store::with_read_index(std::move(kv), std::string(1, ds::replica::kDataPrefix), std::move(ro));
  }
  ds::config::subscribe_spec s;
  s.policy = "bench";
  s.product = products();
  s.topic = a.get("--topic");
  s.group = s.topic + ".bench-apply";
  s.fields = {"id", "name", "price"};
  ds::metrics::registry m;
  ds::replica::replica_options o;
  o.sync_writes = a.flag("--sync");
  o.pipeline = !a.flag("--no-pipeline");
  o.max_batch = static_cast<std::size_t>(a.num("--max-batch", static_cast<long>(o.max_batch)));
  o.apply_workers = static_cast<std::size_t>(a.num("--workers", 0));  // 0: one per partition
  ds::replica::replica r(s, std::move(kv), *f, m.replica("products", "bench"), o);
  if (r.start(error)) {
    std::cerr << error << "\n";
    return 1;
  }
  // The process's CPU (every thread: the loop, the writer, librdkafka's, RocksDB's flushes and
  // compactions while they run): steadier than the rate when other work holds the cores.
  auto process_cpu_s = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  // The loop thread's own CPU (poll, decide, the version table): the part of the work that is
  // not RocksDB's writer, flush or compaction threads, whose share varies from run to run.
  auto thread_cpu_s = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  // And where the loop thread's wall time went (/proc/thread-self/schedstat: ns on a core, ns
  // runnable but waiting for one); the rest it was blocked (the writer thread, librdkafka's
  // queue when the fetch runs dry).
  auto schedstat = [] {
    std::array<double, 2> v{0, 0};
    if (std::FILE* file = std::fopen("/proc/thread-self/schedstat", "r")) {
      unsigned long long run = 0, wait = 0;
      if (std::fscanf(file, "%llu %llu", &run, &wait) == 2)
        v = {static_cast<double>(run) / 1e9, static_cast<double>(wait) / 1e9};
      std::fclose(file);
    }
    return v;
  };
  auto sched0 = schedstat();
  double cpu0 = process_cpu_s(), loop0 = thread_cpu_s();
  auto start = std::chrono::steady_clock::now();
  while (!r.status().caught_up_to_start && seconds_since(start) < 600) r.run_once();
  double secs = seconds_since(start);
  double cpu = process_cpu_s() - cpu0, loop_cpu = thread_cpu_s() - loop0;
  auto sched1 = schedstat();
  auto st = r.status();
  double n = static_cast<double>(std::max<std::uint64_t>(st.applied_total, 1));
  std::printf(
      "applied %llu events in %.2f s = %.0f events/s, CPU %.2f us/event, loop thread %.2f us/event (rocksdb, offsets "
      "in the batch%s%s%s)\n",
      static_cast<unsigned long long>(st.applied_total), secs, static_cast<double>(st.applied_total) / secs,
      cpu * 1e6 / n, loop_cpu * 1e6 / n, so.wal ? ", WAL" : ", no WAL", o.sync_writes ? ", fsync per batch" : "",
      o.pipeline ? "" : ", not pipelined");
  std::printf("loop thread over the %.2f s: on a core %.2f s, waiting for a core %.2f s, blocked %.2f s\n", secs,
              sched1[0] - sched0[0], sched1[1] - sched0[1], secs - (sched1[0] - sched0[0]) - (sched1[1] - sched0[1]));
  // The process's memory as the run leaves it, and its peak (librdkafka's prefetch queue, the
  // memtables, the bootstrap's bloom filter).
  long rss_kib = 0, hwm_kib = 0;
  if (std::FILE* file = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, file) != nullptr) {
      std::sscanf(line, "VmRSS: %ld", &rss_kib);
      std::sscanf(line, "VmHWM: %ld", &hwm_kib);
    }
    std::fclose(file);
  }
  std::printf("RSS at the end %ld MiB, peak %ld MiB\n", rss_kib / 1024, hwm_kib / 1024);
  // The read index is built after the bootstrap, on its own thread, while the copy is in use: how
  // long that takes and what it holds (not part of the rate above; the replica is ready before).
  if (read_index != "none") {
    auto index_start = std::chrono::steady_clock::now();
    double index_cpu0 = process_cpu_s();
    while (r.store().property("datashare.read-index.state") == "building" && seconds_since(index_start) < 300) {
      r.run_once();
    }
    std::printf("read index %s %.2f s after the bootstrap (process CPU %.2f s): %s entries, %.0f MiB\n",
                r.store().property("datashare.read-index.state").c_str(), seconds_since(index_start),
                process_cpu_s() - index_cpu0, r.store().property("datashare.read-index.entries").c_str(),
                std::stod(r.store().property("datashare.read-index.bytes")) / (1 << 20));
  }
  // --settle: the work a run leaves to RocksDB (the memtables not flushed yet, the compactions
  // they and the flushes owe) done and counted too, until no flush or compaction is running or
  // pending. Without it a store with larger memtables or later compactions looks cheaper than it
  // is: part of its cost comes after the run.
  if (a.flag("--settle")) {
    auto settle_start = std::chrono::steady_clock::now();
    (void)r.store().flush(true);
    auto busy = [&r] {
      for (const char* p : {"rocksdb.num-running-flushes", "rocksdb.num-running-compactions",
                            "rocksdb.compaction-pending", "rocksdb.mem-table-flush-pending"}) {
        if (r.store().property(p) != "0") return true;
      }
      return false;
    };
    while (busy() && seconds_since(settle_start) < 300) std::this_thread::sleep_for(50ms);
    double all = process_cpu_s() - cpu0;
    std::printf("settled in %.2f s more: CPU %.2f us/event with the flushes and compactions the run left\n",
                seconds_since(settle_start), all * 1e6 / n);
  }
  auto times = r.times();
  std::printf(
      "loop thread in the consumer's poll %.2f s, waiting for the workers %.2f s; %llu rounds of the workers (%llu "
      "handed out while the one before was applied; the busiest one's share of a round %.2f), %llu plans decided "
      "again (a key in two partitions)\n",
      times.poll_s, times.workers_wait_s, static_cast<unsigned long long>(times.rounds),
      static_cast<unsigned long long>(times.overlapped), times.largest_share,
      static_cast<unsigned long long>(times.conflicts));
  if (a.flag("--stats")) {
    // The store as the run leaves it (what a reader needs to judge the rate: compactions still
    // owed, files in level 0), then RocksDB's own statistics.
    for (const char* p : {"rocksdb.num-files-at-level0", "rocksdb.num-files-at-level1", "rocksdb.num-files-at-level2",
                          "rocksdb.estimate-pending-compaction-bytes", "rocksdb.total-sst-files-size"}) {
      std::printf("%s: %s\n", p, r.store().property(p).c_str());
    }
    std::printf("%s\n", r.store().property("rocksdb.stats").c_str());
  }
  return st.caught_up_to_start ? 0 : 1;
}

int store_read(const args& a) {
  std::string error, dir = a.get("--dir");
  bool fill = !std::filesystem::exists(dir);
  ds::store::rocksdb_options so;
  so.overrides =
      a.get("--rocksdb");  // e.g. "block_based_table_factory={data_block_index_type=kDataBlockBinaryAndHash}"
  auto kv = ds::store::open_rocksdb(dir, so, error);
  if (!kv) {
    std::cerr << error << "\n";
    return 1;
  }
  long keys = a.num("--keys", 1000000), bytes = a.num("--value-bytes", 200), secs = a.num("--seconds", 10);
  if (fill) {
    auto start = std::chrono::steady_clock::now();
    ds::store::write_batch b;
    for (long i = 0; i < keys; ++i) {
      std::string key = key_of(i);
      b.put(ds::replica::data_key(key), ds::replica::encode_record(1, now_us(), false, value_of(key, i, bytes)));
      if (b.size() == 1000 || i + 1 == keys) {
        if (auto ec = kv->write(b, false)) {
          std::cerr << "write: " << ec.message() << "\n";
          return 1;
        }
        b.clear();
      }
    }
    std::printf("filled %ld keys in %.2f s; settling 20 s (flushes, compactions)\n", keys, seconds_since(start));
    std::this_thread::sleep_for(20s);
  }
  std::uint64_t x = 88172645463325252ULL, n = 0, found = 0;
  ds::replica::item it;
  auto random_key = [&] {  // xorshift64 over the filled keys
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return key_of(static_cast<long>(x % static_cast<std::uint64_t>(keys)));
  };
  // Warm-up, not counted: the first touch of each page of the mmap'd table files is a page
  // fault, which a store that has served reads for a while no longer pays.
  {
    auto warm = std::chrono::steady_clock::now();
    while (seconds_since(warm) < static_cast<double>(a.num("--warmup", 2))) {
      for (int j = 0; j < 1000; ++j) {
        (void)ds::replica::lookup(*kv, random_key(), it);
      }
    }
  }
  auto cpu_s = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  double cpu0 = cpu_s();
  auto start = std::chrono::steady_clock::now();
  while (seconds_since(start) < static_cast<double>(secs)) {
    for (int j = 0; j < 1000; ++j) {
      if (!ds::replica::lookup(*kv, random_key(), it)) ++found;
      ++n;
    }
  }
  double s = seconds_since(start), cpu = cpu_s() - cpu0;
  // CPU time per lookup is the steadier figure on a shared machine: wall time includes waiting for a core.
  std::printf("store-read: %llu lookups (%llu found) in %.2f s = %.0f lookups/s, one thread; %.2f us CPU per lookup\n",
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(found), s, static_cast<double>(n) / s,
              cpu * 1e6 / static_cast<double>(n));
  return found == n ? 0 : 1;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

int raw_latency(const args& a) {
  auto f = factory(a.get("--bootstrap"));
  std::string topic = a.get("--topic"), error, detail;
  auto admin = f->make_admin(error);
  if (!admin || admin->ensure_topic(topic, 3, {}, 30s, detail)) {
    std::cerr << "cannot create topic: " << error << detail << "\n";
    return 1;
  }
  long rate = a.num("--rate", 1000), secs = a.num("--seconds", 10);
  auto consumer = f->make_consumer(topic + ".raw", error);
  std::vector<std::int32_t> parts;
  if (!consumer || consumer->partitions(topic, 10s, parts)) return 1;
  std::vector<ds::kafka::partition_offset> start;
  start.reserve(parts.size());
  for (auto p : parts) start.push_back({p, ds::kafka::kOffsetBeginning});
  consumer->assign(topic, start);
  std::vector<double> latencies;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    std::vector<ds::kafka::message> batch;
    long seen = 0;
    while (!done.load() || seen < rate * secs) {
      consumer->poll(100ms, 1000, batch);
      std::int64_t now = now_us();
      for (const auto& m : batch) {
        ++seen;
        auto sent = std::stoll(*m.value);
        if (seen > rate) latencies.push_back(static_cast<double>(now - sent) / 1000.0);  // 1 s warm-up
      }
      if (done.load() && batch.empty()) break;
    }
  });
  auto p = f->make_producer(
      true, [](const ds::kafka::delivery&) {}, error);
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < rate * secs; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::microseconds(i * 1000000 / rate));
    std::string value = std::to_string(now_us());
    p->produce(topic, key_of(i % 1000), value, {}, 0, 0);
    p->poll(0ms);
  }
  p->flush(30s);
  std::this_thread::sleep_for(1s);
  done = true;
  reader.join();
  std::printf("raw librdkafka produce→consume at %ld/s: p50 %.2f ms, p99 %.2f ms (%zu samples)\n", rate,
              quantile(latencies, 0.5), quantile(latencies, 0.99), latencies.size());
  return 0;
}

std::string http_get(std::uint16_t port, const std::string& target) {
  namespace net = boost::asio;
  namespace bhttp = boost::beast::http;
  net::io_context ioc;
  boost::beast::tcp_stream s(ioc);
  s.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  bhttp::request<bhttp::string_body> req{bhttp::verb::get, target, 11};
  req.set(bhttp::field::host, "localhost");
  bhttp::write(s, req);
  boost::beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res);
  return res.body();
}

// Cumulative bucket counts of datashare_propagation_seconds, by upper bound.
std::map<double, double> propagation_buckets(std::uint16_t port) {
  std::map<double, double> out;
  std::istringstream in(http_get(port, "/metrics"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("datashare_propagation_seconds_bucket{", 0) != 0) continue;
    auto le = line.find("le=\"");
    auto end = line.find('"', le + 4);
    std::string bound = line.substr(le + 4, end - le - 4);
    double ub = bound == "+Inf" ? 1e9 : std::stod(bound);
    out[ub] = std::stod(line.substr(line.rfind(' ') + 1));
  }
  return out;
}

// histogram_quantile as Prometheus computes it: linear within the bucket.
double histogram_quantile(const std::map<double, double>& cumulative, double q) {
  double total = cumulative.empty() ? 0 : cumulative.rbegin()->second;
  double rank = q * total, prev_bound = 0, prev_count = 0;
  for (const auto& [bound, count] : cumulative) {
    if (count >= rank) {
      if (bound >= 1e9) return prev_bound;
      return prev_bound + (bound - prev_bound) * (rank - prev_count) / std::max(1.0, count - prev_count);
    }
    prev_bound = bound;
    prev_count = count;
  }
  return prev_bound;
}

int publish_latency(const args& a) {
  namespace net = boost::asio;
  namespace bhttp = boost::beast::http;
  auto port = static_cast<std::uint16_t>(a.num("--port", 0));
  auto metrics_port = static_cast<std::uint16_t>(a.num("--metrics-port", 0));
  long rate = a.num("--rate", 1000), secs = a.num("--seconds", 10);
  constexpr int kConnections = 4;  // one PUT waits for its fsync: spread the rate over a few connections
  std::atomic<long> accepted{0}, failed{0};
  std::map<double, double> warm;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  clients.reserve(kConnections);
  for (int c = 0; c < kConnections; ++c) {
    clients.emplace_back([&, c] {
      net::io_context ioc;
      boost::beast::tcp_stream s(ioc);
      s.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
      boost::beast::flat_buffer buf;
      for (long i = c; i < rate * secs; i += kConnections) {
        std::this_thread::sleep_until(t0 + std::chrono::microseconds(i * 1000000 / rate));
        std::string key = key_of(i % 1000);
        bhttp::request<bhttp::string_body> req{bhttp::verb::put, "/v1/data/products/" + key, 11};
        req.set(bhttp::field::host, "localhost");
        req.body() = value_of(key, i, 200);
        req.prepare_payload();
        bhttp::write(s, req);
        bhttp::response<bhttp::string_body> res;
        bhttp::read(s, buf, res);
        (res.result_int() == 202 ? accepted : failed)++;
      }
    });
  }
  std::this_thread::sleep_for(1s);
  warm = propagation_buckets(metrics_port);  // the first second is warm-up
  for (auto& t : clients) t.join();
  std::this_thread::sleep_for(2s);
  auto all = propagation_buckets(metrics_port);
  for (auto& [bound, count] : all) count -= warm[bound];
  std::printf("sidecar publish→applied at %ld/s: p50 %.2f ms, p99 %.2f ms (%.0f samples; %ld accepted, %ld failed)\n",
              rate, histogram_quantile(all, 0.5) * 1000, histogram_quantile(all, 0.99) * 1000,
              all.empty() ? 0.0 : all.rbegin()->second, accepted.load(), failed.load());
  return failed.load() == 0 ? 0 : 1;
}

int redis_load(const args& a) {
  long events = a.num("--events", 1000000), keys = a.num("--keys", events), bytes = a.num("--value-bytes", 200);
  // The last state of each key, as the replica holds it.
  for (long i = std::max(0L, events - keys); i < events; ++i) {
    std::string key = key_of(i % keys), value = value_of(key, i, bytes);
    std::printf("*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", key.size(), key.c_str(), value.size(),
                value.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: datashare-sidecar-bench produce|apply|raw-latency|publish-latency|redis-load|store-read "
                 "[--flag value]...\n";
    return 2;
  }
  args a;
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      a.v[k] = argv[++i];
    } else {
      a.v[k] = "";
    }
  }
  std::string cmd = argv[1];
  if (cmd == "produce") return produce(a);
  if (cmd == "apply") return apply(a);
  if (cmd == "raw-latency") return raw_latency(a);
  if (cmd == "publish-latency") return publish_latency(a);
  if (cmd == "redis-load") return redis_load(a);
  if (cmd == "store-read") return store_read(a);
  std::cerr << "unknown command " << cmd << "\n";
  return 2;
}
