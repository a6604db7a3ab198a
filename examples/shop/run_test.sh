#!/usr/bin/env bash
# `make run` itself (hack/run.sh) with this build's binaries, on the local cluster, as a user
# runs it: its story names what each order showed before and after the renames and the copies'
# lag read back from Prometheus; then Ctrl-C (SIGINT) stops every process it started, closes
# every port it printed, and the script exits 130. (shop_e2e_test asserts the scenario's
# behaviour in depth; this test is about the script people start first.)
# Usage: run_test.sh BIN_DIR [own-cluster]
#   own-cluster: as on a fresh machine, with no KUBECONFIG / DATASHARE_KAFKA_BOOTSTRAP: make run
#   starts a local control plane and Kafka of its own (another DATASHARE_STATE_DIR, its own ports),
#   and Ctrl-C must stop those too. Otherwise it uses the cluster of the test run, which stays up.
set -euo pipefail
mode=${2:-shared}
if [[ "$mode" == shared ]]; then
  [[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
  : "${KUBECONFIG:?KUBECONFIG is not set: run through ctest (make test), which starts the local cluster}"
  : "${DATASHARE_KAFKA_BOOTSTRAP:?DATASHARE_KAFKA_BOOTSTRAP is not set}"
  export KUBECONFIG DATASHARE_KAFKA_BOOTSTRAP
fi
DATASHARE_ROOT="${DATASHARE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
T=$(mktemp -d)
if [[ "$mode" == own-cluster ]]; then
  unset KUBECONFIG DATASHARE_KAFKA_BOOTSTRAP
  export DATASHARE_STATE_DIR="$T/cluster"
fi
source "$DATASHARE_ROOT/hack/lib/common.sh"
source "$DATASHARE_ROOT/hack/lib/process.sh"
KC=$(kubectl_bin) || die "kubectl not found: run hack/install-deps.sh"
suffix="-run$$$RANDOM"
out="$T/story.txt"

passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
has() { grep -qF -- "$2" "$out" && pass || fail "$1: the output lacks: $2"; }

run_pid=""
cleanup() {
  local status=$? ns r
  [[ -n "$run_pid" ]] && kill -KILL "$run_pid" 2>/dev/null
  for f in "$T"/run/pids/*.pid; do [[ -f "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  if [[ "$mode" == own-cluster ]]; then
    # Its own cluster goes with everything in it (already gone when Ctrl-C did its job).
    "$DATASHARE_ROOT/hack/local-cluster.sh" down >/dev/null 2>&1 || true
  else
    for ns in catalog orders shipping billing; do "$KC" delete namespace "$ns$suffix" --wait=false >/dev/null 2>&1 || true; done
    # The operator is gone: finalizers left behind would hold the namespaces.
    for ns in catalog orders shipping billing; do
      for r in $("$KC" -n "$ns$suffix" get dsp,dp -o name 2>/dev/null); do
        "$KC" -n "$ns$suffix" patch "$r" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
      done
    done
  fi
  if ((status != 0 || failed > 0)); then
    echo "--- make run's output" >&2
    cat "$out" >&2 || true
    for f in "$T"/run/logs/*.log; do [[ -f "$f" ]] && { echo "--- $f (tail)" >&2; tail -15 "$f" >&2; }; done
  fi
  rm -rf "$T"
}
trap cleanup EXIT

# Job control on: a job started in the background of a script otherwise ignores SIGINT, and
# bash cannot trap a signal ignored at its start.
set -m
DATASHARE_RUN_BIN="$1" DATASHARE_RUN_DIR="$T/run" DATASHARE_RUN_SUFFIX="$suffix" \
  bash "$DATASHARE_ROOT/hack/run.sh" >"$out" 2>&1 &
run_pid=$!
set +m
deadline=$(($(date +%s) + 300))
until grep -q "everything runs until Ctrl-C" "$out"; do
  kill -0 "$run_pid" 2>/dev/null || die "make run exited before its story (status: $(wait "$run_pid"; echo $?))"
  (($(date +%s) < deadline)) || die "no story after 300 s"
  sleep 1
done

# The story: the names before and after in each mode, the lag of both copies kept from the topic.
has "hybrid before/after" "orders/order-service      (hybrid) first read: "
has "event before/after" "shipping/shipping-service (event)  first read: "
grep -qE '^      orders/order-service +\(hybrid\) +order [^ ]+ for p-1: "Espresso cup"' "$out" && pass ||
  fail "the hybrid order did not show \"Espresso cup\" before the rename"
grep -qE 'then "Espresso mug"$' "$out" && pass || fail "an order did not show \"Espresso mug\" after the rename"
has "the gateway's copy at once" "billing/billing-service (sync+gateway): \"Teapot, cast iron\" (before: \"Teapot\")"
lag_events=$(grep -cE "^      (orders|shipping)$suffix/[a-z-]+ +[0-9.e+-]+ events$" "$out" || true)
((lag_events == 2)) && pass || fail "the story's lag lines: want one per copy kept from the topic (2), got $lag_events"
has "where to look" "kubectl get dp,dsp -A"
if [[ "$mode" == own-cluster ]]; then
  has "its own cluster" "starting the local control plane and Kafka"
  has "the cluster goes too" "which stops it all, the local cluster too"
  cluster_pids=()
  for f in "$DATASHARE_STATE_DIR"/pids/*.pid; do cluster_pids+=("$(cat "$f")"); done
  ((${#cluster_pids[@]} >= 4)) && pass || fail "the cluster's pid files: want etcd, API server, controller manager, Kafka; got ${#cluster_pids[@]}"
  # shellcheck disable=SC1091
  source "$DATASHARE_STATE_DIR/ports"
  cluster_ports=("$ETCD_PORT" "$API_PORT" "$KAFKA_PORT")
else
  has "the cluster was up" "which stops what this run started (the cluster was up before it)"
fi

# Everything this run started, by pid and by the ports its story printed (not Kafka's).
pids=()
for f in "$T"/run/pids/*.pid; do pids+=("$(cat "$f")"); done
((${#pids[@]} >= 9)) && pass || fail "pid files: want the operator, 4 services, 4 sidecars, the gateway, Prometheus; got ${#pids[@]}"
shared_kafka="${DATASHARE_KAFKA_BOOTSTRAP:-}"  # (its own cluster's Kafka is stopped too: not left out)
mapfile -t ports < <(grep -oE '127\.0\.0\.1:[0-9]+' "$out" | cut -d: -f2 | sort -u | grep -vx "${shared_kafka##*:}")
((${#ports[@]} >= 10)) && pass || fail "ports in the story: want >= 10, got ${#ports[@]}"
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "pid $p not running before Ctrl-C"; done

# Ctrl-C.
kill -INT "$run_pid"
status=0
wait "$run_pid" || status=$?
run_pid=""
((status == 130)) && pass || fail "exit status after Ctrl-C: want 130, got $status"
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && fail "pid $p still running after Ctrl-C"; done
for p in "${ports[@]}"; do port_in_use "$p" && fail "port $p still open after Ctrl-C"; done
has "told" "stopping everything this run started"
if [[ "$mode" == own-cluster ]]; then
  for p in "${cluster_pids[@]}"; do kill -0 "$p" 2>/dev/null && fail "cluster pid $p still running after Ctrl-C"; done
  for p in "${cluster_ports[@]}"; do port_in_use "$p" && fail "cluster port $p still open after Ctrl-C"; done
  [[ ! -d "$DATASHARE_STATE_DIR" ]] && pass || fail "the cluster's state ($DATASHARE_STATE_DIR) left after Ctrl-C"
else
  "$KC" get --raw /readyz >/dev/null 2>&1 && pass || fail "the API server this run found running no longer answers"
fi

echo "make run: $passed checks passed, $failed failed"
((failed == 0))
