#!/usr/bin/env bash
# P6: cold start with 1,000 DataSharingPolicies over 100 DataProducts (100 consumer Deployments,
# 10 policies each, sharing one sidecar per Deployment) already stored: the operator (release
# build) starts and must bring all of them to Ready. Anchor, same run: the time the API server
# took to accept the same objects (one `kubectl apply --server-side`, no operator running) — the
# writes the operator must make (finalizers, statuses, ConfigMaps, pod templates) are of that
# order, so it is the floor any operator has on this machine.
# Prints: time to all Ready, operator RSS at rest, reconciles per second, API requests per reconcile.
#   bench/operator/policies.sh [PRODUCTS] [POLICIES_PER_PRODUCT]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/hack/lib/common.sh"
operator="${DATASHARE_OPERATOR:-$root/build/release/bin/datashare-operator}"
[[ -x "$operator" ]] || die "$operator not built: make build PRESET=release"
if [[ -z "${KUBECONFIG:-}" || -z "${DATASHARE_KAFKA_BOOTSTRAP:-}" ]]; then
  "$root/hack/local-cluster.sh" up >/dev/null
  # shellcheck disable=SC1091
  source "$DATASHARE_STATE_DIR/env"
fi
kc=$(kubectl_bin)
products=${1:-100}
per_product=${2:-10}
policies=$(( products * per_product ))
run="p6-$$"
P="$run-catalog" C="$run-consumers"
work=$(mktemp -d)
metrics_port=$(( 12000 + RANDOM % 9000 ))  # below the ephemeral range
health_port=$(( metrics_port + 1 ))
op_pid=""
cleanup() {
  "$kc" delete namespace "$C" "$P" --wait=false >/dev/null 2>&1 || true
  # The operator removes its finalizers (and the Delete-policy topics) before it stops.
  for _ in $(seq 1 900); do
    # Both must be gone: `get namespace A B` fails as soon as one of them is.
    "$kc" get namespace "$P" >/dev/null 2>&1 || "$kc" get namespace "$C" >/dev/null 2>&1 || break
    sleep 1
  done
  [[ -n "$op_pid" ]] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$kc" apply -f "$root/crds/" >/dev/null
"$kc" create namespace "$P" >/dev/null
"$kc" create namespace "$C" >/dev/null
{
  echo "apiVersion: apps/v1"; echo "kind: Deployment"
  echo "metadata: {name: owner, namespace: $P}"
  echo "spec: {selector: {matchLabels: {app: owner}}, template: {metadata: {labels: {app: owner}}, spec: {containers: [{name: app, image: registry.test/owner:1}]}}}"
  for c in $(seq 1 "$products"); do
    echo "---"; echo "apiVersion: apps/v1"; echo "kind: Deployment"
    echo "metadata: {name: consumer-$c, namespace: $C}"
    echo "spec: {selector: {matchLabels: {app: consumer-$c}}, template: {metadata: {labels: {app: consumer-$c}}, spec: {containers: [{name: app, image: registry.test/consumer:1}]}}}"
  done
} > "$work/workloads.yaml"
{
  for p in $(seq 1 "$products"); do
    cat <<YAML
---
apiVersion: datashare.io/v1alpha1
kind: DataProduct
metadata: {name: product-$p, namespace: $P}
spec:
  owner: {workload: {name: owner}}
  key: id
  fields: [{name: id, type: string}, {name: name, type: string}]
  topic: {name: $run.product-$p, partitions: 1, replicationFactor: 1, deletionPolicy: Delete}
  access: {namespaces: [$C]}
YAML
  done
  for p in $(seq 1 "$products"); do
    for i in $(seq 1 "$per_product"); do
      # Policy i of every product goes to consumer i's Deployment... spread: consumer ((p+i) % products)+1.
      c=$(( (p + i) % products + 1 ))
      cat <<YAML
---
apiVersion: datashare.io/v1alpha1
kind: DataSharingPolicy
metadata: {name: p$p-c$i, namespace: $C}
spec:
  product: {name: product-$p, namespace: $P}
  consumer: {workload: {name: consumer-$c}}
  mode: event
  fields: [id, name]
YAML
    done
  done
} > "$work/resources.yaml"
"$kc" apply --server-side -f "$work/workloads.yaml" >/dev/null

start=$(date +%s.%N)
"$kc" apply --server-side -f "$work/resources.yaml" >/dev/null
applied=$(date +%s.%N)

"$operator" --kafka-bootstrap "$DATASHARE_KAFKA_BOOTSTRAP" --metrics-bind-address "127.0.0.1:$metrics_port" \
  --health-probe-bind-address "127.0.0.1:$health_port" --lag-poll-interval 10s --zap-log-level error ${P6_OPERATOR_ARGS:-} \
  > "$work/operator.log" 2>&1 &
op_pid=$!
op_start=$(date +%s.%N)
ready_count() {
  "$kc" -n "$C" get dsp -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true
}
deadline=$(( $(date +%s) + 600 ))
while (( $(ready_count) < policies )); do
  (( $(date +%s) < deadline )) || die "not all $policies policies Ready after 600 s ($(ready_count) are)"
  sleep 1  # each poll lists 1,000 objects: polling faster loads the API server under test
done
ready=$(date +%s.%N)
sleep 15  # at rest
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$op_pid/status")
m=$(curl -sf "http://127.0.0.1:$metrics_port/metrics")
[[ -z "${P6_METRICS_OUT:-}" ]] || printf '%s\n' "$m" > "$P6_METRICS_OUT"
[[ -z "${P6_LOG_OUT:-}" ]] || cp "$work/operator.log" "$P6_LOG_OUT"
reconciles=$(awk '/^controller_runtime_reconcile_total\{controller="(dataproduct|datasharingpolicy)"/ {s += $NF} END {print s}' <<<"$m")
requests=$(awk '/^rest_client_requests_total/ {s += $NF} END {print s}' <<<"$m")
awk -v s="$start" -v a="$applied" -v o="$op_start" -v r="$ready" -v rss="$rss_kib" -v rec="$reconciles" -v req="$requests" \
    -v n="$policies" -v p="$products" 'BEGIN {
  t = r - o; ta = a - s
  printf "P6 cold start, %d policies over %d products, operator start to all Ready: %.1f s vs API server accepting them %.1f s = %.2fx (bar <= 60 s)\n", n, p, t, ta, t / ta
  printf "   operator RSS at rest: %.1f MiB (bar <= 64 MiB); reconciles: %d (%.0f/s until Ready); API requests per reconcile: %.2f\n", rss / 1024, rec, rec / t, req / rec
}'
