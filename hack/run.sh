#!/usr/bin/env bash
# The main job (`make run`): the local control plane and Kafka (unless KUBECONFIG and
# DATASHARE_KAFKA_BOOTSTRAP point at your own), the operator built and running against them, the
# CRDs and the examples applied, and what the operator made of them. Ctrl-C stops the operator.
# DATASHARE_RUN_ONCE=1: print the story and stop (CI, scripts).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
if [[ -n "${KUBECONFIG:-}" && -n "${DATASHARE_KAFKA_BOOTSTRAP:-}" ]]; then
  log "using your cluster (KUBECONFIG=$KUBECONFIG) and Kafka ($DATASHARE_KAFKA_BOOTSTRAP)"
else
  "$DATASHARE_ROOT/hack/local-cluster.sh" up >/dev/null
  # shellcheck disable=SC1090
  source "$DATASHARE_STATE_DIR/env"
fi
kc=$(kubectl_bin)
run_dir="${DATASHARE_STATE_DIR:-$DATASHARE_CACHE/run}/run"
mkdir -p "$run_dir"

log "building datashare-operator (release preset)"
(cd "$DATASHARE_ROOT" && cmake --preset release >/dev/null && cmake --build --preset release --target datashare-operator -j "$(nproc)" >/dev/null)
operator="$DATASHARE_ROOT/build/release/bin/datashare-operator"

log "installing the CRDs"
"$kc" apply -f "$DATASHARE_ROOT/crds/" >/dev/null

metrics_port=${DATASHARE_METRICS_PORT:-18080}
health_port=${DATASHARE_HEALTH_PORT:-18081}
log "starting the operator (log: $run_dir/operator.log)"
"$operator" --kafka-bootstrap "$DATASHARE_KAFKA_BOOTSTRAP" --metrics-bind-address "127.0.0.1:$metrics_port" \
  --health-probe-bind-address "127.0.0.1:$health_port" --lag-poll-interval 2s >"$run_dir/operator.log" 2>&1 &
op_pid=$!
stop_operator() { kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null || true; }
trap stop_operator EXIT
trap 'echo; log "stopping the operator"; exit 0' INT TERM
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$health_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$op_pid" 2>/dev/null || { tail -20 "$run_dir/operator.log" >&2; die "the operator exited"; }
  sleep 0.3
done

log "applying examples/ (catalog owns products; orders, shipping and billing share them)"
"$kc" apply -f "$DATASHARE_ROOT/examples/" >/dev/null
"$kc" -n catalog wait --for=condition=Ready dataproducts --all --timeout=60s >/dev/null
for ns in orders shipping billing; do
  "$kc" -n "$ns" wait --for=condition=Ready datasharingpolicies --all --timeout=60s >/dev/null
done
sleep 3  # one lag measurement

cat <<MSG

What the operator made of examples/:

$("$kc" get dataproducts,datasharingpolicies -A | grep -E '^(NAMESPACE|catalog|orders|shipping|billing) ' | sed 's/^/  /')

  - topic catalog.products.v1 (compacted) and its dead-letter topic on Kafka $DATASHARE_KAFKA_BOOTSTRAP
  - a publisher sidecar in catalog/product-service, a replica sidecar in each consumer
    (native sidecars: init containers with restartPolicy Always), config in ConfigMaps:
$("$kc" get configmaps -A -l app.kubernetes.io/managed-by=datashare-operator --no-headers | grep -E '^(catalog|orders|shipping|billing) ' | awk '{print "      " $1 "/" $2}')
  - a gateway coordinator for billing's strongly consistent copy:
$("$kc" -n catalog get deploy,svc -l app.kubernetes.io/component=gateway --no-headers | awk '{print "      " $1}')

The sidecar config of orders/order-service (hybrid: id, name local; price through the owner):
$("$kc" -n orders get configmap datashare-sidecar-order-service -o jsonpath='{.data.sidecar\.yaml}' | sed -n '/^subscribe:/,/^participate:/p' | sed 's/^/  /')

Consistency lag measured by the operator (no sidecar runs here: there is no kubelet):
$(curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -E '^datashare_policy_lag_(events|seconds)' | sed 's/^/  /')

Where to look:
  export KUBECONFIG=$KUBECONFIG
  kubectl get dp,dsp -A -o wide          kubectl describe dsp -n orders order-service-products
  kubectl get events.events.k8s.io -A    curl http://127.0.0.1:$metrics_port/metrics
MSG
if [[ "${DATASHARE_RUN_ONCE:-}" == 1 ]]; then exit 0; fi
log "the operator runs until Ctrl-C (the cluster stays up: make cluster-down)"
wait "$op_pid"
