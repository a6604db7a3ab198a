#!/usr/bin/env bash
# P4: the latency the sidecar's sync proxy adds to a read of the owner, measured beside a direct
# call to the same owner in the same run (docs/benchmarks.md), and the cached-read throughput.
#
#   bench/proxy/run.sh [BUILD_DIR]      (default build/release; no Kafka needed: sync mode only)
#
# The owner is datashare-test-owner holding KEYS objects. Latency: datashare-proxy-bench, open
# loop at RATE req/s, direct and proxied requests alternating (cache off, so every proxied read
# is an owner call). Throughput: wrk, 50 connections, random keys, cache on (warm) vs the owner
# directly. Prints the summary line `P4 ...`.
#
# The reference: HAProxy (Debian's, `hack/install-deps.sh` installs it) as a plain HTTP reverse
# proxy in front of the same owner, keep-alive both ways, takes its turn in the latency run
# (`REF_PROXY=none` leaves it out): what one more hop of any proxy costs on this machine.
# RATES="500 2000 5000": the latency run once per rate (each extra rate prints its own line; the
# summary line is the first rate's).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/release}"
bin="$build/bin"
for b in datashare-sidecar datashare-test-owner datashare-proxy-bench; do
  [[ -x "$bin/$b" ]] || { echo "build first: $bin/$b" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
KEYS=${KEYS:-1000}
RATE=${RATE:-500}
RATES=${RATES:-$RATE}
REF_PROXY=${REF_PROXY:-haproxy}
SECONDS_MEASURED=${SECONDS_MEASURED:-20}
CONNS=${CONNS:-50}
DUR=${DUR:-10}
WORK=$(mktemp -d /tmp/datashare-bench-p4.XXXXXX)
pids=()
cleanup() {
  # Sidecars are started inside $(...): their pids come back through files.
  for f in "$WORK"/*.pid; do [[ -e "$f" ]] && pids+=("$(cat "$f")"); done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() {
  python3 - <<'P' 2>/dev/null || echo $(( 20000 + RANDOM % 20000 ))
import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
P
}
wait_http() {  # url, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 not answering after $2 s" >&2; return 1
}

# The owner.
"$bin/datashare-test-owner" --listen 127.0.0.1:0 --port-file "$WORK/owner.port" --threads 2 \
  --path '/products/{key}' >"$WORK/owner.log" 2>&1 &
owner_pid=$!
pids+=("$owner_pid")
for _ in $(seq 1 100); do [[ -s "$WORK/owner.port" ]] && break; sleep 0.1; done
owner=$(cat "$WORK/owner.port")
seq 0 $(( KEYS - 1 )) | xargs -P 8 -I{} curl -fsS -o /dev/null -X PUT \
  --data '{"id":"key-{}","name":"Product {}","price":{}.5}' "http://127.0.0.1:$owner/control/data/key-{}"
curl -fsS "http://127.0.0.1:$owner/products/key-0" >/dev/null

sidecar() {  # name, cache maxEntries[, busyPollMicros] → starts it, prints its port
  local port; port=$(free_port)
  cat > "$WORK/$1.yaml" <<Y
version: 1
dataDir: $WORK/$1
kafka: {bootstrapServers: "${DATASHARE_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"}
listen: {data: {address: 127.0.0.1, port: $port}, threads: 2, busyPollMicros: ${3:-0}}
subscribe:
  - policy: bench-products
    namespace: bench
    product: {name: products, namespace: bench, key: id, fields: [{name: id, type: string}, {name: name, type: string}, {name: price, type: number}]}
    topic: bench.p4.unused
    group: bench.p4
    mode: sync
    fields: []
    syncFields: [id, name, price]
    owner: {url: "http://127.0.0.1:$owner", readPath: "/products/{key}"}
    sync: {timeout: 1s, cache: {ttl: 10m, maxEntries: $2}, maxInFlight: 256}
Y
  "$bin/datashare-sidecar" --config "$WORK/$1.yaml" >"$WORK/$1.log" 2>&1 &
  echo $! > "$WORK/$1.pid"
  wait_http "http://127.0.0.1:$port/healthz" 20 >&2
  echo "$port"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of pid, in ticks
tck=$(getconf CLK_TCK)

# ---- latency: proxied (no cache) vs direct, interleaved ---------------------------------------
# BUSY_POLL_US=N: a second cache-less sidecar with listen.busyPollMicros N takes turns with the
# two others (each stream then runs at RATE/streams), so the option is measured beside the default.
BUSY_POLL_US=${BUSY_POLL_US:-0}
nocache=$(sidecar nocache 0)
extra_args=()
if (( BUSY_POLL_US > 0 )); then
  polling=$(sidecar polling 0 "$BUSY_POLL_US")
  extra_args+=(--proxy2 "$polling")
fi
if [[ "$REF_PROXY" == haproxy ]]; then
  command -v haproxy >/dev/null || { echo "haproxy is needed for the reference (hack/install-deps.sh; REF_PROXY=none to skip)" >&2; exit 1; }
  ref_port=$(free_port)
  # One thread, no busy polling: like the sidecar's defaults. Connections to the owner are kept
  # and reused (http-reuse always), as the sidecar's pool does.
  cat > "$WORK/haproxy.cfg" <<H
global
  nbthread 1
  maxconn 1024
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend bench
  bind 127.0.0.1:$ref_port
  default_backend owner
backend owner
  server owner 127.0.0.1:$owner
H
  haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  echo $! > "$WORK/haproxy.pid"
  wait_http "http://127.0.0.1:$ref_port/products/key-0" 20
  extra_args+=(--ref "$ref_port" --ref-path /products/)
fi
ref_lines=()
for rate in $RATES; do
  out=$("$bin/datashare-proxy-bench" --direct "$owner" --direct-path /products/ --proxy "$nocache" \
    --proxy-path /v1/data/products/ --keys "$KEYS" --rate "$rate" --seconds "$SECONDS_MEASURED" "${extra_args[@]}")
  echo "rate $rate req/s:"; echo "$out"
  if [[ -z "${lat:-}" ]]; then lat=$out; lat_rate=$rate; continue; fi
  x() { awk -v row="$1" -v q="$2" '$1==row { for (i=1;i<=NF;i++) if ($i==q) print $(i+1) }' <<<"$out"; }
  more="P4 at $rate req/s, same script: p50 +$(x added p50) us, p99 +$(x added p99) us (direct p50 $(x direct p50) us)"
  [[ "$REF_PROXY" == haproxy ]] && more+="; HAProxy p50 +$(x added-ref p50) us, p99 +$(x added-ref p99) us"
  ref_lines+=("$more [RATES=\"$RATES\" bench/proxy/run.sh]")
done
RATE=$lat_rate
pick() { awk -v row="$1" -v q="$2" '$1==row { for (i=1;i<=NF;i++) if ($i==q) print $(i+1) }' <<<"$lat"; }
d50=$(pick direct p50); d99=$(pick direct p99); p50=$(pick proxy p50); p99=$(pick proxy p99)
a50=$(pick added p50); a90=$(pick added p90); a99=$(pick added p99)
if [[ "$REF_PROXY" == haproxy ]]; then
  ref_line="P4 reference, HAProxy in front of the same owner, same run: p50 +$(pick added-ref p50) us, p99 +$(pick added-ref p99) us (HAProxy p50 $(pick ref p50) us p99 $(pick ref p99) us) vs ours p50 +${a50} us, p99 +${a99} us [bench/proxy/run.sh]"
fi
if (( BUSY_POLL_US > 0 )); then
  poll_cpu=$(( $(cpu_ticks "$(cat "$WORK/polling.pid")") * 1000 / tck ))
  plain_cpu=$(( $(cpu_ticks "$(cat "$WORK/nocache.pid")") * 1000 / tck ))
  poll_line="P4 with listen.busyPollMicros $BUSY_POLL_US, same run: p50 +$(pick added2 p50) us, p99 +$(pick added2 p99) us (proxied p50 $(pick proxy2 p50) us p99 $(pick proxy2 p99) us) vs without: p50 +${a50} us, p99 +${a99} us; sidecar CPU over the run ${poll_cpu} ms vs ${plain_cpu} ms [BUSY_POLL_US=$BUSY_POLL_US bench/proxy/run.sh]"
fi

# ---- CPU per proxied read (cache off) vs the owner's CPU per read: steadier than latency when
# other work holds the cores. wrk with 8 connections, random keys, on the sidecar, then on the owner.
cat > "$WORK/get.lua" <<L
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format(wrk.path .. "key-%d", math.random(0, $KEYS - 1)))
end
L
cpu_per_request() {  # pid url → CPU us per request of pid over a wrk run against url
  local c0 n out
  c0=$(cpu_ticks "$1")
  out=$(wrk -t1 -c8 -d"${DUR}s" -s "$WORK/get.lua" "$2")
  grep -q "Non-2xx" <<<"$out" && { echo "non-2xx answers in wrk run" >&2; exit 1; }
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v t=$(( $(cpu_ticks "$1") - c0 )) -v n="$n" -v k="$tck" 'BEGIN {printf "%.1f", t * 1e6 / k / n}'
}
cpu_proxy=$(cpu_per_request "$(cat "$WORK/nocache.pid")" "http://127.0.0.1:$nocache/v1/data/products/")
cpu_owner=$(cpu_per_request "$owner_pid" "http://127.0.0.1:$owner/products/")
echo "CPU per read: sidecar (proxied, cache off) $cpu_proxy us, owner (direct) $cpu_owner us"

# ---- cached-read throughput vs the owner directly ---------------------------------------------
cached=$(sidecar cached 100000)
cat > "$WORK/get.lua" <<L
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format(wrk.path .. "key-%d", math.random(0, $KEYS - 1)))
end
L
seq 0 $(( KEYS - 1 )) | xargs -P 8 -I{} curl -fsS -o /dev/null "http://127.0.0.1:$cached/v1/data/products/key-{}"
wrk_owner=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$WORK/get.lua" "http://127.0.0.1:$owner/products/")
wrk_cached=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$WORK/get.lua" "http://127.0.0.1:$cached/v1/data/products/")
echo "$wrk_owner"; echo "$wrk_cached"
for out in "$wrk_owner" "$wrk_cached"; do
  if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx answers in wrk run" >&2; exit 1; fi
done
rps_owner=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$wrk_owner")
rps_cached=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$wrk_cached")
hits=$(curl -fsS "http://127.0.0.1:$cached/metrics" | awk '/^datashare_sync_cache_hits_total/ {print $2}')

ok50=$(awk -v a="$a50" 'BEGIN {print (a <= 50) ? "met" : "not met"}')
ok99=$(awk -v a="$a99" 'BEGIN {print (a <= 250) ? "met" : "not met"}')
echo
echo "P4 sync proxy added latency at $RATE req/s (open loop, cache off): p50 +${a50} us, p99 +${a99} us (proxied p50 ${p50} us p99 ${p99} us) vs direct owner p50 ${d50} us p99 ${d99} us = p50 $ok50, p99 $ok99 (bar p50 <= +50 us, p99 <= +250 us; Dapr publishes ~1.4 ms p90 added for its pair, ours p90 +${a90} us) [bench/proxy/run.sh: datashare-proxy-bench --rate $RATE --seconds $SECONDS_MEASURED]"
echo "P4 sync proxy CPU per read (cache off, wrk -c8): $cpu_proxy us in the sidecar vs $cpu_owner us in the owner answering it = $(awk -v a="$cpu_proxy" -v b="$cpu_owner" 'BEGIN {printf "%.2f", a/b}')x (no bar; load average $(cut -d' ' -f1 /proc/loadavg)) [bench/proxy/run.sh: wrk -t1 -c8 -d${DUR}s, utime+stime per request]"
[[ -n "${poll_line:-}" ]] && echo "$poll_line"
[[ -n "${ref_line:-}" ]] && echo "$ref_line"
for l in "${ref_lines[@]}"; do echo "$l"; done
echo "P4 cached sync reads (wrk -c$CONNS, $KEYS hot keys): $rps_cached req/s vs owner directly $rps_owner req/s = $(awk -v a="$rps_cached" -v b="$rps_owner" 'BEGIN {printf "%.2f", a/b}')x (no bar; cache hits $hits) [bench/proxy/run.sh: wrk -t1 -c$CONNS -d${DUR}s]"
