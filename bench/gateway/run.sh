#!/usr/bin/env bash
# P5 (docs/benchmarks.md): committed gateway transactions per second and their latency with three
# participants on loopback, fsync on everywhere (the decision log's commit records, the
# participants' prepared records, the owner's outbox), side by side with its anchor in the same
# run: the same wrk load of plain PUTs straight to the owner service (what one write costs
# without the gateway), next to Seata's published 1,709 TPS at 13.86 ms average.
#
#   bench/gateway/run.sh [BUILD_DIR]    (default build/release; needs the local cluster's Kafka)
#   CONNECTIONS=32 DURATION=15s bench/gateway/run.sh
#   KAFKA_PROPERTIES='{linger.ms: "0"}' bench/gateway/run.sh    (the sidecars' kafka.properties)
#   CONNECTIONS="16 24 32" bench/gateway/run.sh   (a sweep: the gateway's run once per value, one
#                                                   summary line each; the anchor at the first)
#   GATEWAY_THREADS=2 SIDECAR_THREADS=2 bench/gateway/run.sh   (I/O threads of the gateway and of
#                                                               each sidecar; default 1 each, the
#                                                               products' defaults; until session
#                                                               14 the benchmark ran 2 each)
#   TIMELINE=1 bench/gateway/run.sh   (per second of the gateway's run: transactions answered and
#                                      how many took over 25 / 50 ms, from the gateway's histogram)
#   TRACE_FSYNC=1 bench/gateway/run.sh   (`perf trace` of every fdatasync/fsync of the topology's
#                                         processes during the gateway's run: per process, count and
#                                         latency p50/p99/max, and the slow ones' times)
#
# Topology: datashare-test-owner ← owner sidecar (participant + publisher → Kafka); two copy
# sidecars; datashare-gateway in front. wrk PUTs a fresh key per request (no contention).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/release}"
bin="$build/bin"
for b in datashare-gateway datashare-sidecar datashare-test-owner datashare-sidecar-bench; do
  [[ -x "$bin/$b" ]] || { echo "build first: $bin/$b (cmake --preset release; cmake --build build/release --target $b)" >&2; exit 1; }
done
if [[ -z "${DATASHARE_KAFKA_BOOTSTRAP:-}" ]]; then
  # shellcheck disable=SC1090
  source <("$root/hack/local-cluster.sh" env)
fi
B="$DATASHARE_KAFKA_BOOTSTRAP"
CONNECTIONS=${CONNECTIONS:-32}
read -r -a sweep <<< "$CONNECTIONS"
DURATION=${DURATION:-15s}
WORK=$(mktemp -d /tmp/datashare-bench-gw.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() {  # a port nothing listens on and this script has not handed out yet
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 20000 ))
    grep -qx "$p" "$WORK/ports.taken" 2>/dev/null && continue
    ss -Htln "sport = :$p" 2>/dev/null | grep -q . && continue
    echo "$p" >> "$WORK/ports.taken"
    echo "$p"
    return 0
  done
  echo "no free port" >&2; return 1
}
wait_http() {  # url, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 not answering after $2 s" >&2; return 1
}
topic="bench.p5.$(date +%s)"
"$bin/datashare-sidecar-bench" produce --bootstrap "$B" --topic "$topic" --events 0 --keys 1 --partitions 1 >/dev/null
products='{name: products, namespace: bench, key: id, fields: [{name: id, type: string}, {name: name, type: string}, {name: price, type: number}]}'

owner_port_file="$WORK/owner.port"
"$bin/datashare-test-owner" --listen 127.0.0.1:0 --port-file "$owner_port_file" --path '/products/{key}' \
  --threads 2 > "$WORK/owner.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [[ -s "$owner_port_file" ]] && break; sleep 0.1; done
owner_port=$(cat "$owner_port_file")
owner="http://127.0.0.1:$owner_port"

gw_port=$(free_port); gw_admin=$(free_port)
coordinator="http://127.0.0.1:$gw_port"
participants=""
for name in owner copy1 copy2; do
  data=$(free_port); tx=$(free_port)
  mkdir -p "$WORK/$name"
  {
    echo "version: 1"
    echo "dataDir: $WORK/$name/data"
    echo "kafka: {bootstrapServers: \"$B\"${KAFKA_PROPERTIES:+, properties: $KAFKA_PROPERTIES}}"
    echo "listen: {data: {address: 127.0.0.1, port: $data}, participant: {address: 127.0.0.1, port: $tx}, threads: ${SIDECAR_THREADS:-1}}"
    if [[ $name == owner ]]; then
      echo "publish: [{product: $products, topic: $topic}]"
      echo "participate: [{product: products, namespace: bench, role: owner, coordinatorUrl: \"$coordinator\","
      echo "  owner: {url: \"$owner\", writePath: \"/products/{key}\"}}]"
    else
      echo "subscribe: [{policy: $name-products, namespace: $name, product: $products, topic: $topic,"
      echo "  group: g-$name, mode: sync, fields: [id, name, price], owner: {url: \"$owner\", readPath: \"/products/{key}\"}}]"
      echo "participate: [{product: products, namespace: bench, role: copy, coordinatorUrl: \"$coordinator\", policy: $name-products}]"
    fi
  } > "$WORK/$name/sidecar.yaml"
  "$bin/datashare-sidecar" --config "$WORK/$name/sidecar.yaml" > "$WORK/$name/log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$data/healthz" 30
  role=copy; [[ $name == owner ]] && role=owner
  participants+="  - {name: $name, role: $role, url: \"http://127.0.0.1:$tx\"}"$'\n'
done
cat > "$WORK/gateway.yaml" <<YAML
version: 1
product: $products
dataDir: $WORK/gateway
listen: {data: {address: 127.0.0.1, port: $gw_port}, admin: {address: 127.0.0.1, port: $gw_admin}, threads: ${GATEWAY_THREADS:-1}}
transaction: {timeout: 5s}
participants:
$participants
YAML
"$bin/datashare-gateway" --config "$WORK/gateway.yaml" > "$WORK/gateway.log" 2>&1 &
pids+=($!)
gw_pid=$!
wait_http "http://127.0.0.1:$gw_admin/readyz" 30
curl -fsS -X PUT -d '{"name":"warm"}' "$coordinator/v1/data/products/warm" >/dev/null
if [[ -n "${HOLD:-}" ]]; then  # keep the topology up for a look: HOLD=1 bench/gateway/run.sh
  echo "gateway $coordinator (admin :$gw_admin), owner $owner, work dir $WORK; Ctrl-C ends" >&2
  sleep infinity
fi

run_wrk() {  # label, base url, key prefix, connections
  KEY_PREFIX="$3" wrk -t2 -c"$4" -d"$DURATION" --latency -s "$root/bench/gateway/put.lua" "$2" > "$WORK/$1.wrk" 2>&1
  cat "$WORK/$1.wrk" >&2
}
# Figures from wrk's report: requests/s counting only 2xx, p50 and p99 in ms.
ok_rate() {
  local total non2xx secs
  total=$(awk '/requests in/ {print $1}' "$1")
  secs=$(awk '/requests in/ {gsub(/s,/, "", $4); print $4}' "$1")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$1"); non2xx=${non2xx:-0}
  awk -v t="$total" -v n="$non2xx" -v s="$secs" 'BEGIN {printf "%.0f", (t - n) / s}'
}
pct_ms() {  # file, "50%" | "99%"
  awk -v p="$2" '$1 == p {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}' "$1"
}
non2xx() { local n; n=$(awk '/Non-2xx/ {print $NF}' "$1"); echo "${n:-0}"; }

echo "== P5 anchor: plain PUTs straight to the owner service" >&2
run_wrk owner "$owner" "/products/" "${sweep[0]}"
# CPU of each process of the topology (user + system clock ticks, /proc/PID/stat), before and
# after the gateway's run: CPU per committed transaction, whatever else the machine runs.
cpu_ticks() { for p in "${pids[@]}"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0; done; }
names=(owner-service owner-sidecar copy1-sidecar copy2-sidecar gateway)
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# Per second of the gateway's run (TIMELINE=1): the transactions the gateway answered and how
# many took longer than 25 and 50 ms (its duration histogram, scraped once a second), so a tail
# is seen where it happens (the first seconds, a stall) rather than only as a percentile.
timeline() {  # output file; runs until killed
  local prev="" t=0 line
  while sleep 1; do
    t=$(( t + 1 ))
    line=$(curl -fsS "http://127.0.0.1:$gw_admin/metrics" 2>/dev/null | awk '
      /^datashare_gateway_transaction_duration_seconds_bucket\{le="0.025"\}/ {a=$2}
      /^datashare_gateway_transaction_duration_seconds_bucket\{le="0.05"\}/ {b=$2}
      /^datashare_gateway_transaction_duration_seconds_count/ {n=$2}
      END {print n+0, a+0, b+0}')
    if [[ -n "$prev" ]]; then
      read -r n a b <<< "$line"; read -r pn pa pb <<< "$prev"
      echo "t=${t}s $(( n - pn )) answered, $(( (n - a) - (pn - pa) )) over 25 ms, $(( (n - b) - (pn - pb) )) over 50 ms"
    fi
    prev=$line
  done > "$1"
}
# Every fdatasync/fsync of the topology's processes during the gateway's run (TRACE_FSYNC=1):
# per process (and thread name), count, p50, p99, max, and how many took over 10 ms.
fsync_summary() {  # perf trace output
  python3 - "$1" <<'PY'
import re, sys
by = {}
for line in open(sys.argv[1]):
    m = re.match(r"\s*([0-9.]+) \(\s*([0-9.]+) ms\): (\S+)/\d+ f(?:data)?sync", line)
    if m:
        by.setdefault(m.group(3), []).append((float(m.group(2)), float(m.group(1)) / 1000))
for who, xs in sorted(by.items()):
    d = sorted(x[0] for x in xs)
    slow = " ".join(f"{ms:.0f}@{at:.1f}s" for ms, at in xs if ms > 10) or "none"
    print(f"  {who}: {len(d)} syncs, p50 {d[len(d) // 2]:.2f} ms, p90 {d[int(len(d) * 0.9)]:.2f} ms, "
          f"p99 {d[int(len(d) * 0.99)]:.2f} ms, max {d[-1]:.2f} ms; over 10 ms (ms@s): {slow}")
PY
}
# The gateway's latency histograms (cumulative over the process's life: the warm-up PUT and earlier
# runs of a sweep included) as count, mean, p50, p90, p99 (each the upper bound of its bucket):
# where a committed transaction's time goes, phase by phase and participant by participant.
histograms() {  # /metrics text
  python3 - "$1" <<'PY'
import re, sys
series = {}
for line in open(sys.argv[1]):
    m = re.match(r'(datashare_gateway_(?:phase_seconds|log_sync_seconds|log_sync_commits|participant_call_seconds|transaction_duration_seconds))_(bucket|sum|count)(?:\{(.*)\})? (\S+)', line)
    if not m:
        continue
    name, kind, labels, v = m.group(1), m.group(2), m.group(3) or "", float(m.group(4))
    le = re.search(r'le="([^"]+)"', labels)
    key = (name, re.sub(r',?le="[^"]+"', "", labels))
    h = series.setdefault(key, {"b": []})
    if kind == "bucket":
        h["b"].append((float(le.group(1)), v))
    else:
        h[kind] = v
for (name, labels), h in sorted(series.items()):
    n = h.get("count", 0)
    if not n:
        continue
    unit, scale = ("", 1) if name.endswith("commits") else (" ms", 1000)
    def q(p):
        for bound, c in sorted(h["b"]):
            if c >= p * n:
                return bound * scale
        return float("inf")
    short = name.replace("datashare_gateway_", "")
    print(f"  {short}{{{labels}}}: {n:.0f}, mean {h['sum'] / n * scale:.2f}{unit}, p50 <= {q(0.5):g}, p90 <= {q(0.9):g}, p99 <= {q(0.99):g}")
PY
}
gateway_run() {  # connections
  local c=$1 sampler="" tracer=""
  echo "== P5: PUTs through the gateway (3 participants, fsync on), $c connections" >&2
  # The gateway's resident memory before and after: it remembers every committed transaction for
  # 10 minutes (gateway/README.md), so what it grows by, per committed transaction, is mostly that.
  gw_rss_before=$(rss_kib "$gw_pid" VmRSS)
  mapfile -t cpu_before < <(cpu_ticks)
  if [[ -n "${TIMELINE:-}" ]]; then timeline "$WORK/timeline.$c" & sampler=$!; fi
  if [[ -n "${TRACE_FSYNC:-}" ]]; then
    perf trace -e fdatasync,fsync -p "$(IFS=,; echo "${pids[*]}")" -o "$WORK/fsync.$c" 2>/dev/null & tracer=$!
  fi
  run_wrk "gateway.$c" "$coordinator" "/v1/data/products/c$c-" "$c"
  [[ -n "$sampler" ]] && { kill "$sampler"; wait "$sampler" 2>/dev/null || true; }
  [[ -n "$tracer" ]] && { kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true; }
  mapfile -t cpu_after < <(cpu_ticks)
  gw_rss_after=$(rss_kib "$gw_pid" VmRSS); gw_hwm=$(rss_kib "$gw_pid" VmHWM)
  curl -fsS "http://127.0.0.1:$gw_admin/metrics" > "$WORK/metrics.$c" || true
  grep -E '^datashare_gateway_(transactions_total|in_doubt|participant_call_messages_(sum|count))' "$WORK/metrics.$c" >&2 || true
  histograms "$WORK/metrics.$c" >&2
  [[ -n "$sampler" ]] && { echo "P5 timeline, $c connections:" >&2; cat "$WORK/timeline.$c" >&2; }
  [[ -n "$tracer" ]] && { echo "P5 fsyncs during the gateway's run, $c connections:" >&2; fsync_summary "$WORK/fsync.$c" >&2; }
  report "$WORK/gateway.$c.wrk" "$c"
}
report() {  # wrk output of the gateway's run, connections
  local f=$1 c=$2 g_rate o_rate g50 g99 o50 o99 ratio g_total g_ok hz cpu_line="" cpu_sum=0 d i
  g_rate=$(ok_rate "$f"); o_rate=$(ok_rate "$WORK/owner.wrk")
  g50=$(pct_ms "$f" 50%); g99=$(pct_ms "$f" 99%)
  o50=$(pct_ms "$WORK/owner.wrk" 50%); o99=$(pct_ms "$WORK/owner.wrk" 99%)
  ratio=$(awk -v a="$g_rate" 'BEGIN {printf "%.2f", a / 1709}')
  g_total=$(awk '/requests in/ {print $1}' "$f"); g_ok=$(( g_total - $(non2xx "$f") ))
  hz=$(getconf CLK_TCK)
  for i in "${!names[@]}"; do
    d=$(( ${cpu_after[$i]:-0} - ${cpu_before[$i]:-0} )); cpu_sum=$(( cpu_sum + d ))
    cpu_line+="${names[$i]} $(awk -v d="$d" -v hz="$hz" -v n="$g_ok" 'BEGIN {printf "%.3f", n ? d * 1000 / hz / n : 0}'), "
  done
  echo "P5 CPU per committed transaction (ms; wrk, Kafka and the rest of the machine not counted): ${cpu_line}total $(awk -v d="$cpu_sum" -v hz="$hz" -v n="$g_ok" 'BEGIN {printf "%.3f", n ? d * 1000 / hz / n : 0}')" >&2
  echo "P5 gateway memory: VmRSS $(( gw_rss_before / 1024 )) MiB before, $(( gw_rss_after / 1024 )) MiB after (VmHWM $(( gw_hwm / 1024 )) MiB), $(awk -v a="$gw_rss_after" -v b="$gw_rss_before" -v n="$g_ok" 'BEGIN {printf "%.0f", n ? (a - b) * 1024 / n : 0}') bytes per committed transaction" >&2
  echo "P5 gateway, 3 participants, fsync on: $g_rate committed tx/s, p50 $g50 ms, p99 $g99 ms ($(non2xx "$f") not committed) vs Seata's published 1,709 TPS at 13.86 ms avg (same run, plain PUTs to the owner: $o_rate req/s, p50 $o50 ms, p99 $o99 ms) = ${ratio}x (bar >= 2,000 tx/s, p99 <= 25 ms) [bench/gateway/run.sh: wrk -t2 -c$c -d$DURATION]"
}
for c in "${sweep[@]}"; do gateway_run "$c"; done
