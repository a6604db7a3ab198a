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
    echo "listen: {data: {address: 127.0.0.1, port: $data}, participant: {address: 127.0.0.1, port: $tx}, threads: 2}"
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
listen: {data: {address: 127.0.0.1, port: $gw_port}, admin: {address: 127.0.0.1, port: $gw_admin}, threads: 2}
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

run_wrk() {  # label, base url, key prefix
  KEY_PREFIX="$3" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$root/bench/gateway/put.lua" "$2" > "$WORK/$1.wrk" 2>&1
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
run_wrk owner "$owner" "/products/"
# CPU of each process of the topology (user + system clock ticks, /proc/PID/stat), before and
# after the gateway's run: CPU per committed transaction, whatever else the machine runs.
cpu_ticks() { for p in "${pids[@]}"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0; done; }
names=(owner-service owner-sidecar copy1-sidecar copy2-sidecar gateway)
echo "== P5: PUTs through the gateway (3 participants, fsync on)" >&2
# The gateway's resident memory before and after: it remembers every committed transaction for
# 10 minutes (gateway/README.md), so what it grows by, per committed transaction, is mostly that.
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
gw_rss_before=$(rss_kib "$gw_pid" VmRSS)
mapfile -t cpu_before < <(cpu_ticks)
run_wrk gateway "$coordinator" "/v1/data/products/"
mapfile -t cpu_after < <(cpu_ticks)
gw_rss_after=$(rss_kib "$gw_pid" VmRSS); gw_hwm=$(rss_kib "$gw_pid" VmHWM)
curl -fsS "http://127.0.0.1:$gw_admin/metrics" | grep -E '^datashare_gateway_(transactions_total|in_doubt|participant_call_messages_(sum|count))' >&2 || true

g_rate=$(ok_rate "$WORK/gateway.wrk"); o_rate=$(ok_rate "$WORK/owner.wrk")
g50=$(pct_ms "$WORK/gateway.wrk" 50%); g99=$(pct_ms "$WORK/gateway.wrk" 99%)
o50=$(pct_ms "$WORK/owner.wrk" 50%); o99=$(pct_ms "$WORK/owner.wrk" 99%)
ratio=$(awk -v a="$g_rate" 'BEGIN {printf "%.2f", a / 1709}')
g_total=$(awk '/requests in/ {print $1}' "$WORK/gateway.wrk"); g_ok=$(( g_total - $(non2xx "$WORK/gateway.wrk") ))
hz=$(getconf CLK_TCK); cpu_line=""; cpu_sum=0
for i in "${!names[@]}"; do
  d=$(( ${cpu_after[$i]:-0} - ${cpu_before[$i]:-0} )); cpu_sum=$(( cpu_sum + d ))
  cpu_line+="${names[$i]} $(awk -v d="$d" -v hz="$hz" -v n="$g_ok" 'BEGIN {printf "%.3f", n ? d * 1000 / hz / n : 0}'), "
done
echo "P5 CPU per committed transaction (ms; wrk, Kafka and the rest of the machine not counted): ${cpu_line}total $(awk -v d="$cpu_sum" -v hz="$hz" -v n="$g_ok" 'BEGIN {printf "%.3f", n ? d * 1000 / hz / n : 0}')" >&2
echo "P5 gateway memory: VmRSS $(( gw_rss_before / 1024 )) MiB before, $(( gw_rss_after / 1024 )) MiB after (VmHWM $(( gw_hwm / 1024 )) MiB), $(awk -v a="$gw_rss_after" -v b="$gw_rss_before" -v n="$g_ok" 'BEGIN {printf "%.0f", n ? (a - b) * 1024 / n : 0}') bytes per committed transaction" >&2
echo "P5 gateway, 3 participants, fsync on: $g_rate committed tx/s, p50 $g50 ms, p99 $g99 ms ($(non2xx "$WORK/gateway.wrk") not committed) vs Seata's published 1,709 TPS at 13.86 ms avg (same run, plain PUTs to the owner: $o_rate req/s, p50 $o50 ms, p99 $o99 ms) = ${ratio}x (bar >= 2,000 tx/s, p99 <= 25 ms) [bench/gateway/run.sh: wrk -t2 -c$CONNECTIONS -d$DURATION]"
