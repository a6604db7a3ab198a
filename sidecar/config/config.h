#pragma once
// The sidecar's configuration file: the contract between the operator (which renders it into a
// ConfigMap) and the sidecar (which runs it). Schema version 1; sidecar/config/README.md documents
// every key.
//
// Parsing is done as a whole, before anything starts: every problem in the file is collected with
// its path (`subscribe[1].fields[2]: unknown field "ratng" (product fields: id, name, price)`), so
// one run of the sidecar tells the operator author everything that is wrong. The values here are
// plain data; secrets are referenced (file or environment variable), never held or logged.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace datashare::sidecar::config {

inline constexpr int kSchemaVersion = 1;

enum class field_type { string, number, integer, boolean, object, array };

std::string_view to_string(field_type t);

struct field {
  std::string name;
  field_type type = field_type::string;
  bool restricted = false;  // never published to Kafka; served by sync reads only
};

// A DataProduct as the sidecar needs it: its identity, key and field schema.
struct product_schema {
  std::string name;
  std::string namespace_name;
  std::string key;  // name of the key field
  std::vector<field> fields;

  const field* find(std::string_view field_name) const;
  std::string field_names() const;  // "id, name, price", for messages
};

struct endpoint {
  std::string address;
  std::uint16_t port = 0;  // 0: any free port (tests)
};

struct kafka_security {
  std::string protocol = "PLAINTEXT";  // PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string key_password_file;
  std::string sasl_mechanism;  // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
  std::string sasl_username;
  std::string sasl_password_file;  // exactly one of file / env when SASL is used
  std::string sasl_password_env;
};

struct kafka_settings {
  std::string bootstrap_servers;
  std::string client_id = "datashare-sidecar";
  kafka_security security;
  // librdkafka properties passed through as they are (non-secret ones only: the validator
  // refuses passwords here, they come from files or the environment).
  std::vector<std::pair<std::string, std::string>> properties;
};

struct listen_settings {
  endpoint data{"127.0.0.1", 8090};  // the read/publish API: loopback only
  std::optional<endpoint> admin;     // /healthz, /readyz, /metrics for probes and scrapes
  // The gateway's participant API (POST /v1/tx/<id>/{prepare,commit,abort}, GET /v1/tx/<id>)
  // and nothing else; the coordinator reaches it from outside the pod. Defaults to
  // 0.0.0.0:8091 when participate[] is not empty.
  std::optional<endpoint> participant;
  int threads = 1;  // HTTP I/O threads
  // Microseconds an I/O thread keeps polling after it ran a handler, before it sleeps (0: it
  // sleeps at once). CPU for latency: see sidecar/http/server.h.
  int busy_poll_us = 0;
};

struct outbox_settings {
  std::uint64_t max_entries = 100000;  // beyond it: 503 + Retry-After, nothing stored is dropped
};

struct publish_spec {
  product_schema product;
  std::string topic;
  outbox_settings outbox;
};

enum class sharing_mode { event, sync, hybrid };
enum class store_kind { rocksdb, memory };
// A hash index of the replica's records in memory for point reads (store::with_read_index):
// none; memory, always; automatic ("auto", the default), while the indexes of the sidecar's
// replicas fit a quarter of its memory limit (sidecar_config::memory_limit_bytes).
enum class read_index_kind { none, memory, automatic };

std::string_view to_string(sharing_mode m);

// The sync-read policy of sync and hybrid modes (sidecar/proxy).
struct sync_policy {
  std::chrono::milliseconds timeout{300};
  int retry_attempts = 2;
  std::chrono::milliseconds retry_backoff{20};
  int breaker_consecutive_failures = 5;
  std::chrono::milliseconds breaker_open_for{10000};
  std::chrono::milliseconds cache_ttl{30000};
  std::uint64_t cache_max_entries = 100000;
  bool serve_stale_on_error = true;
  std::uint32_t max_in_flight = 64;  // bulkhead: owner calls in flight at most; beyond it 503
};

struct subscribe_spec {
  std::string policy;
  std::string namespace_name;
  product_schema product;
  std::string topic;
  std::string group;
  sharing_mode mode = sharing_mode::event;
  std::vector<std::string> fields;       // kept locally (event, hybrid)
  std::vector<std::string> sync_fields;  // read through the owner (sync, hybrid)
  std::string owner_url;                 // sync, hybrid: "http://host:port"
  std::string owner_read_path;           // sync, hybrid: "/products/{key}", {key} once, percent-encoded key
  std::chrono::milliseconds max_lag{5000};
  store_kind store = store_kind::rocksdb;
  read_index_kind read_index = read_index_kind::automatic;  // rocksdb store only
  std::uint64_t max_event_bytes = 1 << 20;                  // larger events are poison (dead-letter topic)
  // Threads that apply a full batch (a bootstrap, a backlog), each a share of the topic's
  // partitions (replica_options::apply_workers). 0: one per partition, at most 8.
  std::uint32_t apply_workers = 0;
  sync_policy sync;
};

enum class participant_role { owner, copy };

std::string_view to_string(participant_role r);

inline constexpr std::uint16_t kDefaultParticipantPort = 8091;

// Gateway participant role: this sidecar takes part in the coordinator's two-phase commits of
// one product, either for the owner (applies the change through the owner's writePath, keeps the
// previous value to compensate, publishes the committed value through its publish[] entry) or
// for a copy (the local store of one sync-mode subscribe[] entry).
struct participate_spec {
  std::string product;  // a product name; the owner role needs a publish[] entry for it
  std::string namespace_name;
  participant_role role = participant_role::owner;
  std::string coordinator_url;                    // asked for the outcome of an overdue transaction
  std::chrono::milliseconds lock_timeout{10000};  // a prepared key waits this long before asking
  std::string owner_url;                          // owner: "http://127.0.0.1:8080"
  std::string owner_write_path;                   // owner: "/products/{key}" (PUT, DELETE; GET for the previous value)
  std::string policy;                             // copy: the subscribe[] entry whose copy this is
};

struct sidecar_config {
  int version = kSchemaVersion;
  std::string data_dir;
  // The memory the sidecar may use, which `readIndex: auto` takes a share of; 0 (the default):
  // its container's limit, or the machine's memory (common/memory.h memory_limit).
  std::uint64_t memory_limit_bytes = 0;
  kafka_settings kafka;
  listen_settings listen;
  std::vector<publish_spec> publish;
  std::vector<subscribe_spec> subscribe;
  std::vector<participate_spec> participate;
};

struct problem {
  std::string path;  // "subscribe[1].fields[2]"; empty for the whole file
  std::string message;
};

struct load_result {
  std::optional<sidecar_config> config;  // set only when problems is empty
  std::vector<problem> problems;
};

// Parses and validates YAML text. Never throws.
load_result parse_config(std::string_view yaml_text);

// Reads and parses a file; a missing or unreadable file is one problem. Never throws.
load_result load_config_file(const std::string& path);

// One line per problem: "<path>: <message>".
std::string format_problems(const std::vector<problem>& problems);

// The host and port of an owner URL "http://host[:port]" (port 80 by default; no path, no
// credentials); nullopt for anything else (https is not served by the sync proxy).
struct http_origin {
  std::string host;
  std::uint16_t port = 80;
};
std::optional<http_origin> parse_http_origin(std::string_view url);

// Go-style durations as Kubernetes resources write them: "300ms", "5s", "1m30s", "1.5s", "0".
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace datashare::sidecar::config
