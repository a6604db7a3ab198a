#!/usr/bin/env bash
# The main job (`make run`): the shop example, end to end, on this machine.
#   - the local control plane and Kafka (unless KUBECONFIG and DATASHARE_KAFKA_BOOTSTRAP point at
#     your own), the release build of the operator, sidecar, gateway and the shop's services;
#   - the chart's CRDs, the operator, examples/*.yaml applied;
#   - there is no kubelet: the services, their sidecars and the gateway are started as local
#     processes from the ConfigMaps the operator rendered (hack/lib/shop.sh), plus a Prometheus;
#   - a product renamed through the owner and one through the gateway, and the story of it.
# Ctrl-C stops everything it started: its processes, and the local control plane and Kafka when
# this run is what started them (DATASHARE_KEEP_CLUSTER=1 leaves them up for the next run).
# DATASHARE_RUN_ONCE=1: tell the story, stop, exit 0 (non-zero on any failure).
# DATASHARE_RUN_BIN=DIR: use the binaries in DIR instead of building the release preset.
# DATASHARE_RUN_DIR=DIR, DATASHARE_RUN_SUFFIX=-x: state elsewhere than the cache's run/, and the
# example's namespaces and topic suffixed (so a test of this script meets no other run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
if [[ -n "${KUBECONFIG:-}" && -n "${DATASHARE_KAFKA_BOOTSTRAP:-}" ]]; then
  log "using your cluster (KUBECONFIG=$KUBECONFIG) and Kafka ($DATASHARE_KAFKA_BOOTSTRAP)"
else
  if ! "$DATASHARE_ROOT/hack/local-cluster.sh" status >/dev/null 2>&1; then
    [[ "${DATASHARE_KEEP_CLUSTER:-}" == 1 ]] || started_cluster=1
  fi
  log "starting the local control plane and Kafka (hack/local-cluster.sh)"
  "$DATASHARE_ROOT/hack/local-cluster.sh" up >/dev/null
  # shellcheck disable=SC1091
  source "$DATASHARE_STATE_DIR/env"
fi
export KUBECONFIG DATASHARE_KAFKA_BOOTSTRAP
S="${DATASHARE_RUN_DIR:-$DATASHARE_CACHE/run}"
source "$DATASHARE_ROOT/hack/lib/process.sh"
source "$DATASHARE_ROOT/hack/lib/shop.sh"
KC=$(kubectl_bin) || die "kubectl not found: run hack/install-deps.sh"
SHOP_SUFFIX="${DATASHARE_RUN_SUFFIX:-}"

for f in "$S"/pids/*.pid; do
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && die "another make run is running (pid $(cat "$f"), $f)"
done
rm -rf "$S"
mkdir -p "$S/pids" "$S/logs"

if [[ -n "${DATASHARE_RUN_BIN:-}" ]]; then
  BIN=$DATASHARE_RUN_BIN
else
  log "building the operator, sidecar, gateway and shop services (release preset)"
  (cd "$DATASHARE_ROOT" && cmake --preset release >/dev/null &&
    cmake --build --preset release -j "$(nproc)" --target datashare-operator datashare-sidecar datashare-gateway \
      datashare-shop-products datashare-shop-orders >"$S/logs/build.log" 2>&1) ||
    { tail -30 "$S/logs/build.log" >&2; die "the build failed (log: $S/logs/build.log)"; }
  BIN="$DATASHARE_ROOT/build/release/bin"
fi

cleanup() {
  local status=0
  shop_stop_all || status=1
  if [[ -n "${started_cluster:-}" ]]; then
    log "stopping the local control plane and Kafka this run started (DATASHARE_KEEP_CLUSTER=1 keeps them)"
    "$DATASHARE_ROOT/hack/local-cluster.sh" down >/dev/null || status=1
  fi
  return $status
}
trap cleanup EXIT
trap 'echo; log "stopping everything this run started"; exit 130' INT TERM

log "installing the chart's CRDs, starting the operator (log: $S/logs/operator.log)"
"$KC" apply -f "$DATASHARE_ROOT/charts/datashare/crds/" >/dev/null
shop_start_operator
log "applying examples/ (catalog owns products; orders, shipping and billing share them)"
shop_apply
log "starting the services, sidecars and gateway from the operator's ConfigMaps, and Prometheus"
shop_fetch_configs
shop_start_services
shop_start_prometheus
log "renaming products"
shop_scenario

# The operator's lag of each copy kept from the topic, through Prometheus, once at 0 (or after 20 s).
policy_lag() {
  local sel="namespace=~\"$(shop_ns orders)|$(shop_ns shipping)\"" deadline=$(($(date +%s) + 20)) out
  until out=$(shop_prom_query "datashare_policy_lag_events{$sel}") && [[ $(grep -c . <<<"$out") -ge 2 ]] &&
    awk '$NF + 0 != 0 { bad = 1 } END { exit bad }' <<<"$out"; do
    (($(date +%s) < deadline)) || break
    sleep 1
  done
  { shop_prom_query "datashare_policy_lag_events{$sel}"; shop_prom_query "datashare_policy_lag_seconds{$sel}"; } |
    sed -E 's/.*__name__="datashare_policy_lag_([a-z]+)".*namespace="([^"]*)".*policy="([^"]*)".*\} (.*)/\2\/\3 \4 \1/' |
    sort | awk '{ printf "      %-40s %s %s\n", $1, $2, $3 }'
}
seen() {  # SERVICE MODE
  printf '      %-26s %-14s order %s for %s: "%s"' "${2%% *}/$1" "(${2#* })" "${SHOP_SEEN[$1.order]}" \
    "${SHOP_SEEN[$1.product]}" "${SHOP_SEEN[$1.before]}"
}
p() { shop_url "$1"; }
lag_lines=$(policy_lag)
# The chart's dashboard as a picture of this run (no Grafana here); a failed query is told, not fatal.
python3 "$DATASHARE_ROOT/hack/render-dashboard.py" --prometheus "$(p prometheus)" --out "$S/dashboard.svg" \
  --minutes 2 >/dev/null || log "the dashboard could not be drawn completely (hack/render-dashboard.py)"

cat <<MSG

The shop, running here. There is no kubelet, so this script plays its part: it started each
workload's program and the sidecar the operator injected into it as local processes, from the
ConfigMaps the operator rendered (datashare-sidecar-<workload>, datashare-gateway-products), with
the cluster addresses (<service>.<namespace>.svc) rewritten to 127.0.0.1 ports and the Kafka
bootstrap to $DATASHARE_KAFKA_BOOTSTRAP ($S/rendered: as rendered, $S/config: as run).

  catalog/product-service    the Product service (owner)     $(p product-service.app)   sidecar: publisher, gateway owner
  orders/order-service       the Order service, hybrid       $(p order-service.app)   id, name local from events; price from the owner
  shipping/shipping-service  the Order service, event        $(p shipping-service.app)   id, name, weightGrams local from events
  billing/billing-service    the Order service, sync+gateway $(p billing-service.app)   id, name, price: a copy the gateway keeps
  catalog gateway            datashare-gateway-products       $(p gateway.data)   all-or-nothing updates of owner + billing's copy

1. p-1 "${SHOP_OLD[0]}" and p-2 "${SHOP_OLD[1]}" created through the gateway (the owner and billing's
   copy in one transaction; the committed value published for the others). One order each:
$(seen order-service "orders hybrid")
$(seen shipping-service "shipping event")
$(seen billing-service "billing sync+gateway")

2. The catalog renames p-1 to "${SHOP_NEW[0]}" through the Product service (stored, then published
   by its sidecar to catalog.products.v1). The orders showed "${SHOP_OLD[0]}" before; after it:
      orders/order-service      (hybrid) first read: "${SHOP_SEEN[order-service.right_after]}", then "${SHOP_SEEN[order-service.after]}"
      shipping/shipping-service (event)  first read: "${SHOP_SEEN[shipping-service.right_after]}", then "${SHOP_SEEN[shipping-service.after]}"
   The rename's propagation, publish → applied, as each sidecar measured it (datashare_propagation_seconds):
      orders/order-service ${SHOP_SEEN[order-service.prop_ms]} ms, shipping/shipping-service ${SHOP_SEEN[shipping-service.prop_ms]} ms

3. p-2 renamed to "${SHOP_NEW[1]}" through the gateway: billing's copy changed in the same
   transaction as the owner, so the first read after the gateway's answer showed
      billing/billing-service (sync+gateway): "${SHOP_SEEN[billing-service.right_after]}" (before: "${SHOP_SEEN[billing-service.before]}")

The operator's lag of the copies kept from the topic (consumer-group offsets; Prometheus,
datashare_policy_lag_events and _seconds):
$lag_lines

Where to look:
  export KUBECONFIG=$KUBECONFIG
  kubectl get dp,dsp -A                    kubectl describe dsp -n orders order-service-products
  Prometheus  $(p prometheus)/graph?g0.expr=datashare_policy_lag_events   (scrapes all of the below every second)
  operator    $(p operator.metrics)/metrics
  sidecars    product-service $(p product-service.admin)/metrics  order-service $(p order-service.admin)/metrics
              shipping-service $(p shipping-service.admin)/metrics  billing-service $(p billing-service.admin)/metrics
  gateway     $(p gateway.admin)/metrics
  orders      curl $(p order-service.app)/orders
  rename      curl -X PUT $(p product-service.app)/catalog/products/p-1 -d '{"name":"Espresso cup","price":4.5,"weightGrams":180}'
  dashboard   $S/dashboard.svg   (the chart's Grafana dashboard drawn from this Prometheus; again with
              python3 hack/render-dashboard.py --prometheus $(p prometheus) --out FILE.svg)
  logs        $S/logs
MSG
if [[ "${DATASHARE_RUN_ONCE:-}" == 1 ]]; then
  trap - EXIT
  cleanup || die "some processes did not stop on SIGTERM"
  exit 0
fi
if [[ -n "${started_cluster:-}" ]]; then
  log "everything runs until Ctrl-C, which stops it all, the local cluster too"
else
  log "everything runs until Ctrl-C, which stops what this run started (the cluster was up before it)"
fi
while :; do
  shop_check_alive
  sleep 1
done
