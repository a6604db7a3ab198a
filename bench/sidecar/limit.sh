#!/usr/bin/env bash
# A sidecar bootstrapping 1,000,000 records of ~200 B inside a memory cgroup of LIMIT MiB (the
# container limit of a pod, here without a kubelet): does it get there, how much does it use, and
# what does its read index do. Needs root and a writable cgroup v1 memory controller or cgroup v2
# (this machine has v1 at /sys/fs/cgroup/memory).
#
#   bench/sidecar/limit.sh [LIMIT_MIB ...] [BUILD_DIR via BUILD=]   (default 128 256; build/release)
#
# Prints per limit: ready or killed, the time, the cgroup's peak, the OOM kills, the read index.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD:-$root/build/release}"
sidecar="$build/bin/datashare-sidecar"
tool="$build/bin/datashare-sidecar-bench"
[[ -x "$sidecar" && -x "$tool" ]] || { echo "build first: $sidecar, $tool" >&2; exit 1; }
if [[ -z "${DATASHARE_KAFKA_BOOTSTRAP:-}" ]]; then
  # shellcheck disable=SC1090
  source <("$root/hack/local-cluster.sh" env)
fi
limits=("$@")
(( ${#limits[@]} )) || limits=(128 256)
if [[ -d /sys/fs/cgroup/memory ]]; then
  cg=/sys/fs/cgroup/memory/datashare-limit-bench.$$
  mkdir "$cg"
  set_limit() { echo $(( $1 << 20 )) > "$cg/memory.limit_in_bytes"; echo 0 > "$cg/memory.max_usage_in_bytes"; }
  peak() { echo $(( $(cat "$cg/memory.max_usage_in_bytes") >> 20 )); }
  kills() { awk '/^oom_kill / {print $2}' "$cg/memory.oom_control"; }
else
  cg=/sys/fs/cgroup/datashare-limit-bench.$$
  mkdir "$cg"
  set_limit() { echo $(( $1 << 20 )) > "$cg/memory.max"; }
  peak() { echo $(( $(cat "$cg/memory.peak" 2>/dev/null || echo 0) >> 20 )); }
  kills() { awk '/^oom_kill / {print $2}' "$cg/memory.events"; }
fi
work=$(mktemp -d /tmp/datashare-limit.XXXXXX)
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rmdir "$cg" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
topic="bench.limit.$(date +%s)"
"$tool" produce --bootstrap "$DATASHARE_KAFKA_BOOTSTRAP" --topic "$topic" --events 1000000 --keys 1000000 \
  --value-bytes 200 --partitions 3
port=$(( 20000 + RANDOM % 20000 ))
for limit in "${limits[@]}"; do
  rm -rf "$work/data"
  cat > "$work/sidecar.yaml" <<Y
version: 1
dataDir: $work/data
kafka: {bootstrapServers: "$DATASHARE_KAFKA_BOOTSTRAP"}
listen: {data: {address: 127.0.0.1, port: $port}}
subscribe:
  - {policy: limit, namespace: bench, topic: $topic, group: $topic.$limit, mode: event, fields: [id, name, price],
     maxLag: 60s, product: {name: products, namespace: bench, key: id,
                            fields: [{name: id, type: string}, {name: name, type: string}, {name: price, type: number}]}}
Y
  set_limit "$limit"
  before=$(kills)
  sh -c "echo \$\$ > $cg/cgroup.procs; exec $sidecar --config $work/sidecar.yaml" 2>"$work/log" &
  pid=$!
  start=$(date +%s%N)
  outcome="not ready after 120 s"
  for _ in $(seq 1 1200); do
    if ! kill -0 "$pid" 2>/dev/null; then outcome="exited"; break; fi
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" == 200 ]]; then
      outcome="ready"; break
    fi
    sleep 0.1
  done
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  sleep 3  # the read index's build, after the bootstrap
  index=$(curl -s "http://127.0.0.1:$port/readyz" | sed -nE 's/.*"readIndex":"([a-z]+)".*/\1/p')
  echo "limit ${limit} MiB: ${outcome} after ${ms} ms, cgroup peak $(peak) MiB, OOM kills $(( $(kills) - before )), read index ${index:-?}"
  grep -m1 'msg="memory"' "$work/log" || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
