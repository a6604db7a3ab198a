// datashare-sidecar --config FILE [--check]
//
// Reads and validates the whole config first (exit 2 listing every problem; --check stops
// there), then opens the stores, starts the publishers and replicas and serves the local API
// until SIGTERM or SIGINT. Exit 1 when something the config names cannot be set up (a store
// directory, a port); exit 3 when the Kafka broker keeps refusing the credentials or the TLS
// handshake.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/memory.h"
#include "common/thread_pool.h"
#include "sidecar/api/router.h"
#include "sidecar/config/config.h"
#include "sidecar/http/server.h"
#include "sidecar/kafka/rdkafka_client.h"
#include "sidecar/metrics/metrics.h"
#include "sidecar/participant/http_links.h"
#include "sidecar/participant/migrate.h"
#include "sidecar/participant/participant.h"
#include "sidecar/participant/service.h"
#include "sidecar/proxy/http_owner_client.h"
#include "sidecar/proxy/proxy.h"
#include "sidecar/publisher/publisher.h"
#include "sidecar/replica/layout.h"
#include "sidecar/replica/replica.h"
#include "sidecar/store/memory_kv.h"
#include "sidecar/store/read_index.h"
#include "sidecar/store/rocksdb_kv.h"

namespace ds = datashare::sidecar;

namespace {

// How long SIGTERM may take before the sidecar exits regardless (see the end of main). Under the
// kubelet's default grace period of 30 s, with room for the app container stopping first.
constexpr std::chrono::seconds kStopBudget{6};

// outbox_and_participant: an outbox that also holds the owner participant's records.
enum class store_use { replica, outbox, participant, outbox_and_participant };

// A replica's store looks up the versions of keys it does not hold, and a participant's the
// record of every transaction new to it (absent): a memtable bloom filter answers those without a
// search of the memtable's skip list (2.2 % of the owner sidecar's CPU in P5 without it); the
// outbox only appends, and there the filter would only hold 0.8 MiB (P7). A replica's store needs
// no write-ahead log (its log is the topic: a crash rolls it back to its last flush, offsets
// included, and the replica reads the rest again; sidecar/replica/README.md). The outbox and the
// participant's store keep theirs: what they hold exists nowhere else. A replica's store has
// memtables of 32 MiB, two of them flushed together (a quarter as many level-0 files as 16 MiB
// ones flushed one by one, and as many fewer compactions); its bootstrap stages its writes in
// 64 MiB stages ingested as table files instead (kv::expect_new_keys). Smaller when the sidecar's
// memory limit asks for it (store::store_memory_for: 8 MiB memtables under 128Mi).
std::unique_ptr<ds::store::kv> open_store(const std::string& dir, store_use use, const ds::store::store_memory& memory,
                                          std::string& error) {
  bool replica = use == store_use::replica;
  ds::store::rocksdb_options o;
  o.memtable_bloom = replica || use == store_use::participant || use == store_use::outbox_and_participant;
  o.wal = !replica;
  o.merge_memtables = replica;
  o.write_buffer_bytes = replica ? memory.replica_write_buffer : memory.logged_write_buffer;
  return ds::store::open_rocksdb(dir, o, error);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  datashare::flag_set flags("datashare-sidecar");
  flags.add("config", &config_path, "the sidecar config file (schema version 1, see sidecar/config/README.md)");
  flags.add("check", &check_only, "validate the config file and exit");
  auto problems = flags.parse(argc, argv);
  if (problems.empty() && config_path.empty()) problems.push_back("--config: required");
  if (auto code = flags.exit_code(problems)) return *code;
  auto loaded = ds::config::load_config_file(config_path);
  if (!loaded.config) {
    std::cerr << "datashare-sidecar: " << config_path << " is not a valid sidecar config (schema version "
              << ds::config::kSchemaVersion << "):\n"
              << ds::config::format_problems(loaded.problems);
    return 2;
  }
  if (check_only) {
    std::cout << config_path << ": valid\n";
    return 0;
  }
  const auto& cfg = *loaded.config;

  // Signals are taken by sigwait below; every thread started from here on inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  ds::metrics::registry metrics;
  auto kafka = ds::kafka::make_rdkafka_factory(cfg.kafka);

  // What the stores and the read indexes may hold follows the memory the sidecar may use.
  const std::uint64_t memory_limit = cfg.memory_limit_bytes != 0 ? cfg.memory_limit_bytes : datashare::memory_limit();
  std::size_t replica_stores = 0;
  for (const auto& s : cfg.subscribe)
    replica_stores += s.mode != ds::config::sharing_mode::sync && s.store == ds::config::store_kind::rocksdb;
  const auto store_memory = ds::store::store_memory_for(memory_limit, replica_stores);
  ds::store::set_block_cache_capacity(store_memory.block_cache);
  datashare::log::info("memory", {{"limit_bytes", std::to_string(memory_limit)},
                                  {"replica_memtable_bytes", std::to_string(store_memory.replica_write_buffer)},
                                  {"logged_memtable_bytes", std::to_string(store_memory.logged_write_buffer)},
                                  {"block_cache_bytes", std::to_string(store_memory.block_cache)},
                                  {"read_index_budget_bytes", std::to_string(store_memory.read_index_budget)}});

  // Before the proxies, which use its I/O threads; handlers still queued at exit are destroyed
  // with it, after the proxies (they hold no reference that their destruction uses).
  ds::http::limits limits;
  limits.busy_poll = std::chrono::microseconds(cfg.listen.busy_poll_us);
  ds::http::server server(cfg.listen.threads, limits);

  // Sync and hybrid policies: one proxy each. Their owner calls and retry timers run on the I/O
  // thread of the connection that asked: a cache miss then costs no thread hand-off on the way
  // out or back.
  auto& proxy_io = server.context();
  std::vector<std::unique_ptr<ds::proxy::sync_proxy>> proxies;
  for (const auto& s : cfg.subscribe) {
    if (s.mode == ds::config::sharing_mode::event) continue;
    const auto origin = ds::config::parse_http_origin(s.owner_url);  // validated with the config
    auto client =
        std::make_unique<ds::proxy::http_owner_client>(proxy_io, origin->host, origin->port, s.sync.max_in_flight);
    ds::proxy::proxy_env env;
    env.schedule = [&proxy_io](std::chrono::milliseconds delay, std::function<void()> fn) {
      // On the calling I/O thread, as its owner calls are (http_owner_client).
      auto* here = ds::http::server::current_context();
      auto timer = std::make_shared<boost::asio::steady_timer>(here != nullptr ? *here : proxy_io, delay);
      timer->async_wait([timer, fn = std::move(fn)](boost::system::error_code ec) {
        if (!ec) fn();
      });
    };
    // Local fields too: a hybrid read falls back to the owner for them when the copy is behind.
    std::vector<std::string> fields = s.fields;
    fields.insert(fields.end(), s.sync_fields.begin(), s.sync_fields.end());
    proxies.push_back(std::make_unique<ds::proxy::sync_proxy>(s, std::move(fields), std::move(client),
                                                              metrics.sync(s.policy), std::move(env)));
  }

  // readIndex: auto — the replicas' indexes share a quarter of the sidecar's memory (its
  // container's limit, or the machine's memory); one that takes them past it is dropped and its
  // replica reads RocksDB (sidecar/store/read_index.h).
  auto index_budget = std::make_shared<ds::store::memory_budget>(store_memory.read_index_budget);
  std::vector<std::unique_ptr<ds::replica::replica>> replicas;
  for (const auto& s : cfg.subscribe) {
    if (s.mode == ds::config::sharing_mode::sync) continue;
    std::unique_ptr<ds::store::kv> kv;
    if (s.store == ds::config::store_kind::memory) {
      kv = std::make_unique<ds::store::memory_kv>();
    } else {
      std::string error;
      kv = open_store((std::filesystem::path(cfg.data_dir) / "replica" / s.policy).string(), store_use::replica,
                      store_memory, error);
      if (!kv) {
        std::cerr << "datashare-sidecar: policy " << s.policy << ": " << error << "\n";
        return 1;
      }
      if (s.read_index == ds::config::read_index_kind::memory ||
          (s.read_index == ds::config::read_index_kind::automatic && store_memory.read_index_budget != 0)) {
        // Every record in a hash for the GETs of one key (P2), built by a scan of the store on its
        // own thread while the replica starts (its reads go to RocksDB until the index is complete).
        ds::store::read_index_options ro;
        if (s.read_index == ds::config::read_index_kind::automatic) ro.budget = index_budget;
        ro.on_drop = [policy = s.policy, limit = index_budget->limit()](std::size_t bytes, const std::string& why) {
          datashare::log::warn("read index dropped: reads of this copy go to RocksDB until the sidecar restarts",
                               {{"policy", policy},
                                {"reason", why},
                                {"index_bytes", std::to_string(bytes)},
                                {"budget_bytes", std::to_string(limit)}});
        };
        kv = ds::store::with_read_index(std::move(kv), std::string(1, ds::replica::kDataPrefix), std::move(ro));
      }
    }
    ds::replica::replica_options ro;
    ro.apply_workers = s.apply_workers;
    replicas.push_back(std::make_unique<ds::replica::replica>(s, std::move(kv), *kafka,
                                                              metrics.replica(s.product.name, s.policy), ro));
  }

  std::vector<std::unique_ptr<ds::publisher::publisher>> publishers;
  for (const auto& p : cfg.publish) {
    std::string error;
    auto use = store_use::outbox;
    for (const auto& part : cfg.participate) {
      if (part.product == p.product.name && part.role == ds::config::participant_role::owner)
        use = store_use::outbox_and_participant;
    }
    auto kv = open_store((std::filesystem::path(cfg.data_dir) / "outbox" / p.product.name).string(), use, store_memory,
                         error);
    if (!kv) {
      std::cerr << "datashare-sidecar: product " << p.product.name << ": " << error << "\n";
      return 1;
    }
    publishers.push_back(
        std::make_unique<ds::publisher::publisher>(p, std::move(kv), *kafka, metrics.publisher(p.product.name)));
    if (auto ec = publishers.back()->start(error)) {
      std::cerr << "datashare-sidecar: product " << p.product.name << ": " << error << "\n";
      return 1;
    }
  }

  // Gateway participants: after the publishers, which the owner role publishes through.
  std::vector<std::unique_ptr<ds::participant::participant>> participants;
  for (const auto& p : cfg.participate) {
    std::string error;
    ds::publisher::publisher* pub = nullptr;
    for (auto& candidate : publishers) {
      if (candidate->spec().product.name == p.product) pub = candidate.get();
    }
    std::string own_dir = (std::filesystem::path(cfg.data_dir) / "participant" / p.product).string();
    std::unique_ptr<ds::store::kv> kv;
    ds::participant::participant_options options;
    if (p.role == ds::config::participant_role::owner) {
      // The owner's records live in the outbox's store, so a commit's record and its outbox
      // entry share one fsync (sidecar/participant/README.md); a store of the old layout is
      // moved there first.
      std::size_t moved = 0;
      if (auto ec = ds::participant::migrate_store(own_dir, pub->store(), error, &moved)) {
        std::cerr << "datashare-sidecar: participant " << p.product << ": " << error << "\n";
        return 1;
      }
      if (moved > 0) {
        std::cerr << "datashare-sidecar: participant " << p.product << ": moved " << moved << " entries of " << own_dir
                  << " into the outbox's store\n";
      }
      kv = std::make_unique<ds::participant::borrowed_kv>(pub->store());
      options.records_in_outbox = true;
      options.writer = [pub](ds::store::write_batch b, std::function<void(std::error_code)> done, bool sync) {
        pub->write(std::move(b), std::move(done), sync);
      };
      options.version_floor = [pub](const std::string& key) { return pub->version_floor(key); };
    } else {
      kv = open_store(own_dir, store_use::participant, store_memory, error);
    }
    if (!kv) {
      std::cerr << "datashare-sidecar: participant " << p.product << ": " << error << "\n";
      return 1;
    }
    auto call_timeout = std::min<std::chrono::milliseconds>(p.lock_timeout, std::chrono::seconds(5));
    ds::config::product_schema product;
    std::vector<std::string> copy_fields;
    std::unique_ptr<ds::participant::owner_api> owner;
    ds::participant::publish_fn publish;
    if (p.role == ds::config::participant_role::owner) {
      product = pub->spec().product;
      auto where = ds::http::parse_origin(p.owner_url);
      if (!where) {
        std::cerr << "datashare-sidecar: participant " << p.product << ": owner url " << p.owner_url
                  << " is not http://host[:port]\n";
        return 1;
      }
      owner = std::make_unique<ds::participant::http_owner>(*where, p.owner_write_path, call_timeout);
      publish = [pub](const std::string& key, const std::optional<std::string>& value, std::uint64_t version,
                      ds::store::write_batch with, ds::participant::publish_callback done) {
        pub->submit(
            key, value,
            [done = std::move(done)](const ds::publisher::publish_result& r) {
              if (r.status == 202) {
                done({}, "");
              } else {
                done(std::make_error_code(std::errc::resource_unavailable_try_again),
                     "outbox answered " + std::to_string(r.status) + " " + r.body);
              }
            },
            version, std::move(with));
      };
    } else {
      for (const auto& s : cfg.subscribe) {
        if (s.policy == p.policy) {
          product = s.product;
          copy_fields = s.fields;
        }
      }
    }
    participants.push_back(std::make_unique<ds::participant::participant>(
        p, product, copy_fields, std::move(kv), std::move(owner), std::move(publish),
        std::make_unique<ds::participant::http_outcomes>(p.coordinator_url, call_timeout), options));
    if (auto ec = participants.back()->start(error)) {
      std::cerr << "datashare-sidecar: participant " << p.product << ": " << error << "\n";
      return 1;
    }
    if (p.role == ds::config::participant_role::owner) {
      // The owner app's direct writes respect the gateway's locks (409 while a transaction holds
      // the key). The publishers stop, their writers joined, before the participants go.
      pub->set_key_holder([part = participants.back().get()](const std::string& key) { return part->holder_of(key); });
    }
  }

  std::vector<ds::replica::replica*> replica_ptrs;
  replica_ptrs.reserve(replicas.size());
  for (auto& r : replicas) replica_ptrs.push_back(r.get());
  std::vector<ds::publisher::publisher*> publisher_ptrs;
  publisher_ptrs.reserve(publishers.size());
  for (auto& p : publishers) publisher_ptrs.push_back(p.get());
  std::vector<ds::proxy::sync_proxy*> proxy_ptrs;
  proxy_ptrs.reserve(proxies.size());
  for (auto& p : proxies) proxy_ptrs.push_back(p.get());
  ds::api::router router(metrics, replica_ptrs, publisher_ptrs, proxy_ptrs);
  std::vector<ds::participant::participant*> participant_ptrs;
  for (auto& p : participants) {
    participant_ptrs.push_back(p.get());
    if (p->spec().role == ds::config::participant_role::copy) {
      router.add_copy(
          p->spec().product, &p->store(), [part = p.get()](const std::string& key) { return part->held_ms(key); },
          [part = p.get()] { return part->released(); });
    }
  }
  datashare::thread_pool participant_pool(participant_ptrs.empty() ? 0 : 16);
  ds::participant::service participant_api(participant_ptrs, participant_pool);

  std::uint16_t data_port = 0, admin_port = 0;
  if (auto ec = server.listen(
          cfg.listen.data.address, cfg.listen.data.port,
          [&router](const ds::http::request& req, const ds::http::responder& r) { router.handle_data(req, r); },
          data_port)) {
    std::cerr << "datashare-sidecar: cannot listen on " << cfg.listen.data.address << ":" << cfg.listen.data.port
              << ": " << ec.message() << "\n";
    return 1;
  }
  if (cfg.listen.admin) {
    if (auto ec = server.listen(
            cfg.listen.admin->address, cfg.listen.admin->port,
            [&router](const ds::http::request& req, const ds::http::responder& r) { router.handle_admin(req, r); },
            admin_port)) {
      std::cerr << "datashare-sidecar: cannot listen on " << cfg.listen.admin->address << ":" << cfg.listen.admin->port
                << ": " << ec.message() << "\n";
      return 1;
    }
  }
  std::uint16_t participant_port = 0;
  if (!participants.empty()) {
    const auto& pe = *cfg.listen.participant;
    if (auto ec = server.listen(
            pe.address, pe.port,
            [&participant_api](const ds::http::request& req, const ds::http::responder& r) {
              participant_api.handle(req, r);
            },
            participant_port)) {
      std::cerr << "datashare-sidecar: cannot listen on " << pe.address << ":" << pe.port << ": " << ec.message()
                << "\n";
      return 1;
    }
  }
  server.start();
  std::cerr << "datashare-sidecar: serving data on " << cfg.listen.data.address << ":" << data_port;
  if (cfg.listen.admin) std::cerr << ", admin on " << cfg.listen.admin->address << ":" << admin_port;
  if (!participants.empty())
    std::cerr << ", participant on " << cfg.listen.participant->address << ":" << participant_port;
  std::cerr << " (" << publishers.size() << " published, " << replicas.size() << " replicated, " << proxies.size()
            << " read through owners)" << std::endl;

  std::atomic<bool> stop{false};
  std::vector<std::thread> loops;
  loops.reserve(replicas.size());
  for (auto& r : replicas) {
    loops.emplace_back([&stop, rep = r.get()] {
      // The topic may not exist yet (the operator creates it): keep trying, not ready meanwhile.
      std::string error;
      while (!stop.load()) {
        if (!rep->start(error, &stop) || stop.load()) break;
        std::cerr << "datashare-sidecar: policy " << rep->spec().policy << ": " << error << "; retrying in 2 s\n";
        for (int i = 0; i < 20 && !stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      rep->run(stop);
    });
  }

  // Once start-up is over (every replica caught up to the marks seen at its start, or 30 s), the
  // code pages only start-up ran leave the resident set (common/memory.h; P7 in
  // docs/benchmarks.md). Code that runs later is mapped again by minor faults.
  std::thread settle([&stop, &replicas] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    auto started = [&replicas] {
      return std::all_of(replicas.begin(), replicas.end(),
                         [](const auto& r) { return r->status().caught_up_to_start; });
    };
    while (!stop.load() && !started() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (int i = 0; i < 10 && !stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop.load()) return;
    std::size_t released = datashare::release_code_pages();
    std::cerr << "datashare-sidecar: start-up done; " << released / 1024 << " KiB of start-up code pages unmapped\n";
  });

  // With TLS or SASL, a broker that keeps refusing the credentials (or the handshake) stops the
  // sidecar with status 3 and the broker's reason: the credentials are read at start, so only a
  // restart with fixed ones (the Secret the pod mounts) can help; retrying would only hide it.
  std::atomic<int> exit_code{0};
  std::thread refusal_check;
  if (cfg.kafka.security.protocol != "PLAINTEXT" && (!cfg.publish.empty() || !cfg.subscribe.empty())) {
    refusal_check = std::thread([&cfg, &stop, &exit_code] {
      if (auto refused = ds::kafka::await_broker_answer(cfg.kafka, stop)) {
        std::cerr << "datashare-sidecar: " << *refused << "; stopping (exit 3): fix the credentials, then restart"
                  << std::endl;
        exit_code = 3;
        ::kill(::getpid(), SIGTERM);
      }
    });
  }

  int sig = 0;
  sigwait(&signals, &sig);
  if (exit_code.load() == 3) {
    std::cerr << "datashare-sidecar: stopping" << std::endl;
  } else {
    std::cerr << "datashare-sidecar: " << strsignal(sig) << ", stopping" << std::endl;
  }
  // The stop is bounded. Nothing the sidecar acknowledged depends on an orderly stop: the outbox
  // is fsync'd before a 202, a replica's offsets are in the same write as its data, and both
  // are shown to survive kill -9 (sidecar/integration crash and publisher-kill tests). So when a
  // step below hangs (a Kafka call waiting out its timeout on an unreachable broker; librdkafka
  // 2.0.2 never finishing the destruction of a consumer whose topic was deleted), the sidecar
  // says which step and exits anyway, well inside the pod's grace period.
  static std::atomic<const char*> phase{"stopping the replicas"};  // outlives main for the watchdog
  std::thread([code = exit_code.load()] {
    std::this_thread::sleep_for(kStopBudget);
    std::cerr << "datashare-sidecar: still " << phase.load() << " after " << kStopBudget.count()
              << " s; exiting without waiting (nothing acknowledged is lost)" << std::endl;
    std::_Exit(code);
  }).detach();
  stop = true;
  if (refusal_check.joinable()) refusal_check.join();
  settle.join();
  for (auto& t : loops) t.join();
  phase = "answering the last requests";
  for (auto& p : participants) p->stop();
  for (auto& p : publishers) p->stop();  // answers what was queued before the server goes
  server.stop();
  phase = "closing the stores and Kafka clients";
  replicas.clear();
  participants.clear();
  publishers.clear();
  return exit_code.load();
}
