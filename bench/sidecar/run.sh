#!/usr/bin/env bash
# The sidecar's benchmarks, each beside its anchor in the same run (docs/benchmarks.md):
#   P1 replica apply rate into RocksDB vs kcat merely consuming the same 1M-event topic, P1_ROUNDS
#      pairs (default 5), the medians compared
#   P2 GET throughput via the sidecar (wrk) vs redis-benchmark GET, same keys, same connections;
#      latency open loop below saturation (datashare-read-bench), sidecar and Redis alternating;
#      the default configuration and others side by side (P2_VARIANTS)
#   P3 publish → applied latency at 1,000 events/s vs raw librdkafka produce → consume
#   P7 sidecar RSS idle, and with 1M replicated entities of ~200 bytes
#
#   bench/sidecar/run.sh [BUILD_DIR]    (default build/release; needs the local cluster's Kafka)
#
# Prints one summary line per bar: `P<n> <what>: <ours> vs <anchor> = <ratio> (bar <bar>) [command]`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/release}"
bin="$build/bin"
sidecar="$bin/datashare-sidecar"
tool="$bin/datashare-sidecar-bench"
[[ -x "$sidecar" && -x "$tool" && -x "$bin/datashare-read-bench" && -x "$bin/datashare-get-load" ]] ||
  { echo "build first: $sidecar, $tool, $bin/datashare-read-bench, $bin/datashare-get-load" >&2; exit 1; }
if [[ -z "${DATASHARE_KAFKA_BOOTSTRAP:-}" ]]; then
  # shellcheck disable=SC1090
  source <("$root/hack/local-cluster.sh" env)
fi
B="$DATASHARE_KAFKA_BOOTSTRAP"
EVENTS=${EVENTS:-1000000}
WORK=$(mktemp -d /tmp/datashare-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ts=$(date +%s)
free_port() {  # a port nothing listens on and this script has not handed out yet (called in $(...))
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
ms() { echo $(( $(date +%s%N) / 1000000 )); }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# "N MiB (anonymous A, file-backed F)": the RocksDB table files are read through mmap, and the
# pages of them a scan or GETs touched count in the RSS while the kernel leaves them mapped (clean
# page cache, the first memory reclaimed under a limit); the anonymous part is the process's own.
rss_parts() { awk '/VmRSS/ {r=$2} /RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "%d MiB (anonymous %d, file-backed %d)", r/1024, a/1024, f/1024}' "/proc/$1/status"; }
wait_ready() {  # port, seconds[, pid: give up when it has exited]
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    [[ -n "${3:-}" ]] && ! kill -0 "$3" 2>/dev/null && { echo "sidecar on $1 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "sidecar on $1 not ready after $2 s" >&2; return 1
}
products='{name: products, namespace: bench, key: id, fields: [{name: id, type: string}, {name: name, type: string}, {name: price, type: number}]}'
summary=()
ONLY=${ONLY:-"P1 P2 P3 P7"}  # a subset, e.g. ONLY="P2 P7"
want() { [[ " $ONLY " == *" $1 "* ]]; }

# ---- P1 ----------------------------------------------------------------------------------
t1="bench.p1.$ts"
if want P1 || want P2 || want P7; then
  "$tool" produce --bootstrap "$B" --topic "$t1" --events "$EVENTS" --keys "$EVENTS" --value-bytes 200 --partitions 3
fi
if want P1; then
# Both rates swing by 2x from one run to the next on this 2-vCPU guest (kcat 0.58-1.20 us/event
# within ten minutes), so one pair is a coin toss: P1_ROUNDS pairs, the order alternating within
# the pair, and the summary gives the medians, their ratio and every pair's ratio.
P1_ROUNDS=${P1_ROUNDS:-5}
p1_load=$(cut -d' ' -f1 /proc/loadavg)
kcat_rates=() kcat_cpus=() ours_rates=() ours_cpus=() pair_ratios=() scheds=()
run_kcat() {
  local start n kcat_ms
  start=$(ms)
  # kcat's CPU (user + system) beside its rate: the steadier figure when other work holds the cores.
  n=$(/usr/bin/time -f '%U %S' -o "$WORK/kcat.time" kcat -C -b "$B" -t "$t1" -o beginning -e -q -f '%o\n' | wc -l)
  kcat_ms=$(( $(ms) - start ))
  kcat_rate=$(( n * 1000 / kcat_ms ))
  kcat_cpu=$(awk -v n="$n" '{printf "%.2f", ($1 + $2) * 1e6 / n}' "$WORK/kcat.time")
  echo "kcat consumed $n events in ${kcat_ms} ms = $kcat_rate events/s, CPU $kcat_cpu us/event"
}
run_ours() {
  local ours_all ours
  rm -rf "$WORK/p1"
  ours_all=$("$tool" apply --bootstrap "$B" --topic "$t1" --dir "$WORK/p1")
  echo "$ours_all"
  ours=$(head -1 <<<"$ours_all")
  # Where the apply loop's wall time went: on a contended machine mostly waiting for a core.
  sched=$(sed -n 's/^loop thread over the \([0-9.]*\) s: on a core \([0-9.]*\) s, waiting for a core \([0-9.]*\) s.*/\3 of \1 s/p' <<<"$ours_all")
  ours_rate=$(sed -E 's/.*= ([0-9]+) events\/s.*/\1/' <<<"$ours")
  ours_cpu=$(sed -E 's/.*CPU ([0-9.]+) us\/event.*/\1/' <<<"$ours")
}
for round in $(seq 1 "$P1_ROUNDS"); do
  if (( round % 2 )); then run_kcat; run_ours; else run_ours; run_kcat; fi
  kcat_rates+=("$kcat_rate") kcat_cpus+=("$kcat_cpu") ours_rates+=("$ours_rate") ours_cpus+=("$ours_cpu")
  [[ -n "$sched" ]] && scheds+=("$sched")
  pair_ratios+=("$(awk -v a="$ours_rate" -v b="$kcat_rate" 'BEGIN {printf "%.2f", a/b}')")
  echo "P1 pair $round of $P1_ROUNDS: ours $ours_rate vs kcat $kcat_rate events/s = ${pair_ratios[-1]}x"
done
rm -rf "$WORK/p1"
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ours_rate=$(median "${ours_rates[@]}"); ours_rate=${ours_rate%.*}
kcat_rate=$(median "${kcat_rates[@]}"); kcat_rate=${kcat_rate%.*}
ours_cpu=$(median "${ours_cpus[@]}")
kcat_cpu=$(median "${kcat_cpus[@]}")
ratio=$(awk -v a="$ours_rate" -v b="$kcat_rate" 'BEGIN {printf "%.2f", a/b}')
summary+=("P1 replica apply, durable (RocksDB, offsets in the batch): median of $P1_ROUNDS pairs $ours_rate events/s vs kcat consume $kcat_rate events/s = ${ratio}x (bar >= 0.7x); pairs ${pair_ratios[*]}; CPU $ours_cpu us/event vs kcat $kcat_cpu us/event (medians); load average $p1_load${scheds[0]:+, the apply loop waiting for a core ${scheds[*]}} [bench/sidecar/run.sh: datashare-sidecar-bench apply vs kcat -C -e -f '%o\\n', $EVENTS events of ~200 B, P1_ROUNDS=$P1_ROUNDS]")
fi

# ---- P7 (with 1M entities) and P2 -------------------------------------------------------------
# P2 runs each configuration of the read path as its own sidecar on its own copy of the topic,
# side by side in the same minutes: "default" (the sidecar's defaults: readIndex auto, which on
# this machine's memory indexes the 1M records, sidecar/store/read_index.h; one HTTP I/O thread);
# "none" (readIndex: none, RocksDB only); and for the open-loop latency only, "default+busypoll"
# (listen.busyPollMicros 100). P2_VARIANTS picks a subset (the first is also P7's "with 1M").
# In a variant's name "index" asks readIndex: memory, "2io" two HTTP I/O threads: with the client
# on the same 2 cores, two I/O threads wake for small batches (more epoll_wait, epoll_ctl and
# context switches per GET).
if want P2 || want P7; then
P2_VARIANTS=${P2_VARIANTS:-"default none default+2io default+busypoll"}
want P2 || P2_VARIANTS=default
declare -A vport vpid vrss_parts vthreads vindex
start_replica() {  # variant
  local v=$1 p extra_listen="" extra_sub="" threads=1 state=""
  [[ "$v" == *index* ]] && extra_sub=", readIndex: memory"
  [[ "$v" == *none* ]] && extra_sub=", readIndex: none"
  [[ "$v" == *busypoll* ]] && extra_listen=", busyPollMicros: 100"
  [[ "$v" == *2io* ]] && threads=2
  vthreads[$v]=$threads
  p=$(free_port)
  cat > "$WORK/replica-$v.yaml" <<Y
version: 1
dataDir: $WORK/replica-data-$v
kafka: {bootstrapServers: "$B"}
listen: {data: {address: 127.0.0.1, port: $p}, threads: $threads$extra_listen}
subscribe:
  - {policy: bench, namespace: bench, product: $products, topic: $t1, group: $t1.sidecar-$v, mode: event,
     fields: [id, name, price], maxLag: 60s$extra_sub}
Y
  "$sidecar" --config "$WORK/replica-$v.yaml" 2>"$WORK/replica-$v.log" &
  vpid[$v]=$!; pids+=("$!")
  vport[$v]=$p
  wait_ready "$p" 600 "${vpid[$v]}" || { tail -3 "$WORK/replica-$v.log" >&2; return 1; }
  # The read index is built after the bootstrap, beside the ready copy: its memory counts.
  for _ in $(seq 1 3000); do
    state=$(curl -fsS "http://127.0.0.1:$p/readyz" | sed -E 's/.*"readIndex":"([a-z]+)".*/\1/')
    [[ "$state" == building || "$state" == suspended ]] || break
    sleep 0.1
  done
  vindex[$v]=$state
  echo "sidecar $v: ready (read index: $state), RSS $(rss_parts "${vpid[$v]}")"
}
# One at a time: bootstraps side by side would share the 2 cores.
for v in $P2_VARIANTS; do start_replica "$v"; done
first=${P2_VARIANTS%% *}
# Let RocksDB finish the flushes and compactions of the bootstrap: P2 is about steady-state reads.
# The RSS "with 1M" is taken after it too: a copy at rest, its bootstrap's memory given back.
sleep "${SETTLE:-20}"
for v in $P2_VARIANTS; do
  vrss_parts[$v]=$(rss_parts "${vpid[$v]}")
  echo "sidecar $v: RSS with $EVENTS entities at rest: ${vrss_parts[$v]}"
done
rss_full=${vrss_parts[$first]}

if want P2; then
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$tool" redis-load --events "$EVENTS" --keys "$EVENTS" --value-bytes 200 | redis-cli -p "$rport" --pipe >/dev/null
CONNS=${CONNS:-50}
DUR=${DUR:-10}
cat > "$WORK/get.lua" <<L
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/v1/data/products/key:%012d", math.random(0, $EVENTS - 1)))
end
L
# CPU time per request of each server (utime + stime of the process, the kernel's TCP work in its
# system calls included): steadier than req/s when other work holds the cores.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
# Closed loop (wrk, then the same client for both servers) for the variants without busy poll,
# Redis after them in the same minute.
declare -A wrk_rps wrk_p99 wrk_cpu non2xx gl_side
tput_variants=()
for v in $P2_VARIANTS; do [[ "$v" == *busypoll* ]] || tput_variants+=("$v"); done
for v in "${tput_variants[@]}"; do
  c0=$(cpu_ticks "${vpid[$v]}")
  out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$WORK/get.lua" "http://127.0.0.1:${vport[$v]}")
  wrk_cpu[$v]=$(( ($(cpu_ticks "${vpid[$v]}") - c0) * 1000000 / tck / $(awk '/requests in/ {print $1}' <<<"$out") ))
  echo "wrk, sidecar $v:"; echo "$out"
  wrk_rps[$v]=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  wrk_p99[$v]=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx[$v]=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
done
c0=$(cpu_ticks "$redis_pid")
redis_csv=$(redis-benchmark -p "$rport" -t get -c "$CONNS" -n $(( 60000 * DUR )) -r "$EVENTS" --csv)
redis_cpu_us=$(( ($(cpu_ticks "$redis_pid") - c0) * 1000000 / tck / (60000 * DUR) ))
echo "$redis_csv"
redis_rps=$(tail -1 <<<"$redis_csv" | awk -F'","' '{printf "%d", $2}')
redis_p99=$(tail -1 <<<"$redis_csv" | awk -F'","' '{print $7}')
# The same servers behind one client (datashare-get-load: the same closed loop for HTTP and RESP,
# its own CPU per request printed): wrk costs more CPU per request than redis-benchmark, and on 2
# cores the client's CPU is taken from the server's.
gl() {  # protocol port pid → "N req/s (server X us, client Y us per request)"
  local c0 out n
  c0=$(cpu_ticks "$3")
  out=$("$bin/datashare-get-load" --protocol "$1" --port "$2" --keys "$EVENTS" --connections "$CONNS" --seconds "$DUR")
  n=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  awk -v o="$out" -v t=$(( $(cpu_ticks "$3") - c0 )) -v n="$n" -v k="$tck" -v d="$DUR" 'BEGIN {
    match(o, /client_cpu_us_per_request=[0-9.]+/); c = substr(o, RSTART + 26, RLENGTH - 26);
    printf "%d req/s (server %.1f us, client %s us per request)", n / d, t * 1e6 / k / n, c }'
}
for v in "${tput_variants[@]}"; do gl_side[$v]=$(gl http "${vport[$v]}" "${vpid[$v]}"); done
gl_redis=$(gl redis "$rport" "$redis_pid")
for v in "${tput_variants[@]}"; do echo "datashare-get-load: sidecar $v ${gl_side[$v]}"; done
echo "datashare-get-load: redis $gl_redis"
# One connection, closed loop (the next GET as soon as the answer is in: no queue, and neither
# side sleeps long enough for its core to go idle), the first variant and Redis behind the same
# client (datashare-get-load: wrk's own tail at one connection is ~3x its server's, 439 vs 113-128
# us p99 against one sidecar): the latency of the read path itself, beside the open loop's below,
# which adds the guest's wake-ups.
c1() {  # protocol port → "p50 X us p99 Y us (N req/s)"
  "$bin/datashare-get-load" --protocol "$1" --port "$2" --keys "$EVENTS" --connections 1 --seconds "$DUR" |
    sed -E 's/.*rate=([0-9]+) p50_us=([0-9]+) p99_us=([0-9]+).*/p50 \2 us p99 \3 us (\1 req\/s)/'
}
c1_side=$(c1 http "${vport[$first]}")
c1_redis=$(c1 redis "$rport")
echo "one connection: sidecar $first $c1_side, redis $c1_redis"
# Latency below saturation: open loop at RATE req/s (both streams together), the sidecar's GETs
# and Redis' GETs alternating (datashare-read-bench), the p99 bar's measure; one run per variant.
RATE=${RATE:-500}
declare -A ol
for v in $P2_VARIANTS; do
  lat=$("$bin/datashare-read-bench" --http "${vport[$v]}" --redis "$rport" --keys "$EVENTS" --rate "$RATE" --seconds "$DUR")
  echo "open loop, sidecar $v:"; echo "$lat"
  pick() { awk -v row="$1" -v q="$2" '$1==row { for (i=1;i<=NF;i++) if ($i==q) print $(i+1) }' <<<"$lat"; }
  ol[$v]="sidecar p50 $(pick sidecar p50) us p99 $(pick sidecar p99) us vs redis p50 $(pick redis p50) us p99 $(pick redis p99) us"
done
load=$(cut -d' ' -f1 /proc/loadavg)
for v in "${tput_variants[@]}"; do
  ratio=$(awk -v a="${wrk_rps[$v]}" -v b="$redis_rps" 'BEGIN {printf "%.2f", a/b}')
  same="; behind one client (datashare-get-load -c$CONNS): sidecar ${gl_side[$v]} vs redis $gl_redis"
  ols="open loop $RATE req/s: ${ol[$v]}"
  [[ "$v" == "$first" ]] && ols="one connection (datashare-get-load -c1): sidecar $c1_side vs redis $c1_redis; $ols"
  [[ -n "${ol[$v+busypoll]:-}" ]] && ols+="; with listen.busyPollMicros 100: ${ol[$v+busypoll]}"
  what="$v: read index ${vindex[$v]}"
  summary+=("P2 local read via sidecar [$what, RSS with $EVENTS entities ${vrss_parts[$v]}] (GET, loopback HTTP, $CONNS connections, ${vthreads[$v]} I/O thread(s)): ${wrk_rps[$v]} req/s p99 ${wrk_p99[$v]} vs redis-benchmark GET $redis_rps req/s p99 ${redis_p99} ms = ${ratio}x (bar >= 1.0x, p99 <= 250us); CPU per request ${wrk_cpu[$v]} us vs redis ${redis_cpu_us} us; $ols; load average $load$same${non2xx[$v]:+ [non-2xx: ${non2xx[$v]}]} [bench/sidecar/run.sh: wrk -t1 -c$CONNS -d${DUR}s --latency vs redis-benchmark -t get -c $CONNS -r $EVENTS; datashare-read-bench --rate $RATE]")
done
fi

for v in $P2_VARIANTS; do kill "${vpid[$v]}"; wait "${vpid[$v]}" 2>/dev/null || true; done
fi

# ---- P7 idle -----------------------------------------------------------------------------------
if want P7; then
t7="bench.p7.$ts"
"$tool" produce --bootstrap "$B" --topic "$t7" --events 0 --keys 1 >/dev/null
iport=$(free_port)
cat > "$WORK/idle.yaml" <<Y
version: 1
dataDir: $WORK/idle-data
kafka: {bootstrapServers: "$B"}
listen: {data: {address: 127.0.0.1, port: $iport}}
publish:
  - {product: $products, topic: $t7}
subscribe:
  - {policy: idle, namespace: bench, product: $products, topic: $t7, group: $t7.idle, mode: event, fields: [id, name]}
Y
"$sidecar" --config "$WORK/idle.yaml" 2>"$WORK/idle.log" &
ip=$!; pids+=("$ip")
wait_ready "$iport" 60
sleep 5
rss_idle=$(rss_kib "$ip")
kill "$ip"; wait "$ip" 2>/dev/null || true
ratio=$(awk -v a="$rss_idle" 'BEGIN {printf "%.2f", a/16384}')
summary+=("P7 sidecar idle RSS (1 publisher + 1 replica, RocksDB): $((rss_idle / 1024)).$(( (rss_idle % 1024) * 10 / 1024 )) MiB vs bar 16 MiB = ${ratio}x (bar <= 1.0x); with $EVENTS replicated entities of ~200 B ($first): $rss_full [bench/sidecar/run.sh: VmRSS after 5 s idle]")
fi

# ---- P3 ----------------------------------------------------------------------------------------
if want P3; then
t3="bench.p3.$ts"
"$tool" produce --bootstrap "$B" --topic "$t3" --events 0 --keys 1 >/dev/null
oport=$(free_port); cport=$(free_port)
cat > "$WORK/owner.yaml" <<Y
version: 1
dataDir: $WORK/owner-data
kafka: {bootstrapServers: "$B"}
listen: {data: {address: 127.0.0.1, port: $oport}}
publish:
  - {product: $products, topic: $t3}
Y
cat > "$WORK/consumer.yaml" <<Y
version: 1
dataDir: $WORK/consumer-data
kafka: {bootstrapServers: "$B"}
listen: {data: {address: 127.0.0.1, port: $cport}}
subscribe:
  - {policy: p3, namespace: bench, product: $products, topic: $t3, group: $t3.consumer, mode: event, fields: [id, name, price]}
Y
"$sidecar" --config "$WORK/owner.yaml" 2>"$WORK/owner.log" &
pids+=("$!")
"$sidecar" --config "$WORK/consumer.yaml" 2>"$WORK/consumer.log" &
pids+=("$!")
wait_ready "$oport" 60
wait_ready "$cport" 60
ours=$("$tool" publish-latency --port "$oport" --metrics-port "$cport" --rate 1000 --seconds "${P3_SECONDS:-20}")
echo "$ours"
raw=$("$tool" raw-latency --bootstrap "$B" --topic "bench.p3raw.$ts" --rate 1000 --seconds "${P3_SECONDS:-20}")
echo "$raw"
o50=$(sed -E 's/.*p50 ([0-9.]+) ms.*/\1/' <<<"$ours"); o99=$(sed -E 's/.*p99 ([0-9.]+) ms.*/\1/' <<<"$ours")
r50=$(sed -E 's/.*p50 ([0-9.]+) ms.*/\1/' <<<"$raw"); r99=$(sed -E 's/.*p99 ([0-9.]+) ms.*/\1/' <<<"$raw")
diff99=$(awk -v a="$o99" -v b="$r99" 'BEGIN {printf "%+.2f", a-b}')
summary+=("P3 propagation publish (outbox, fsync) -> applied at 1,000 events/s: p50 $o50 ms, p99 $o99 ms vs raw librdkafka produce->consume p50 $r50 ms, p99 $r99 ms = p99 ${diff99} ms (bar p99 <= raw + 3 ms) [bench/sidecar/run.sh: datashare-sidecar-bench publish-latency vs raw-latency]")
fi

echo
echo "Summary ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)):"
printf '%s\n' "${summary[@]}"
