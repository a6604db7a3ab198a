#!/usr/bin/env bash
# End to end, the scenario of `make run` without the story: the operator on the real API server
# and Kafka, the shop example applied in namespaces of its own, the services, sidecars and gateway
# as local processes from the config the operator rendered, a real Prometheus scraping them.
# Checks: each order shows the old name before and the new one after the rename, in event,
# hybrid and sync+gateway mode (the gateway's copy at once); the lag series are in Prometheus,
# finite, never negative, and at 0 once the copies converged; the chart's dashboard, drawn from
# that Prometheus, has data in its panels; a copy frozen on purpose is seen behind, over its budget
# by the chart's alert rule, and back at 0 once thawed; every process exits on SIGTERM.
# Usage: e2e_test.sh BIN_DIR (holding datashare-operator, -sidecar, -gateway, -shop-products, -shop-orders)
set -euo pipefail
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest (make test), which starts the local cluster}"
: "${DATASHARE_KAFKA_BOOTSTRAP:?DATASHARE_KAFKA_BOOTSTRAP is not set}"
export KUBECONFIG DATASHARE_KAFKA_BOOTSTRAP
DATASHARE_ROOT="${DATASHARE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
source "$DATASHARE_ROOT/hack/lib/common.sh"
S=$(mktemp -d)
source "$DATASHARE_ROOT/hack/lib/process.sh"
source "$DATASHARE_ROOT/hack/lib/shop.sh"
BIN=${1:?usage: e2e_test.sh BIN_DIR}
KC=$(kubectl_bin) || die "kubectl not found: run hack/install-deps.sh"
SHOP_SUFFIX="-e2e$$$RANDOM"

passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
expect_eq() { [[ "$2" == "$3" ]] && pass || fail "$1: want \"$3\", got \"$2\""; }

namespaces() { local n; for n in catalog orders shipping billing; do shop_ns "$n"; done; }
cleanup() {
  local status=$? ns r
  shop_stop_all 2>/dev/null || true
  for ns in $(namespaces); do "$KC" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; done
  # With the operator gone, finalizers left behind would hold the namespaces: drop them.
  for ns in $(namespaces); do
    for r in $("$KC" -n "$ns" get dsp,dp -o name 2>/dev/null); do
      "$KC" -n "$ns" patch "$r" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
  done
  if ((status != 0 || failed > 0)); then
    for f in "$S"/logs/*.log; do echo "--- $f (tail)" >&2; tail -15 "$f" >&2; done
  fi
  rm -rf "$S"
}
trap cleanup EXIT

started=$(date +%s)
phase() { echo "[$(($(date +%s) - started)) s] $*"; }
"$KC" apply -f "$DATASHARE_ROOT/charts/datashare/crds/" >/dev/null
shop_start_operator
phase "operator ready"
shop_apply
phase "example applied"
shop_fetch_configs
shop_start_services
shop_start_prometheus
phase "services, sidecars, gateway and Prometheus started"
shop_scenario
shop_check_alive
phase "scenario done"

# 1. What each order showed, in each mode.
for s in order-service shipping-service; do
  expect_eq "$s: the order before the rename" "${SHOP_SEEN[$s.before]}" "${SHOP_OLD[0]}"
  expect_eq "$s: the order after the rename" "${SHOP_SEEN[$s.after]}" "${SHOP_NEW[0]}"
  [[ "${SHOP_SEEN[$s.right_after]}" == "${SHOP_OLD[0]}" || "${SHOP_SEEN[$s.right_after]}" == "${SHOP_NEW[0]}" ]] &&
    pass || fail "$s: right after the rename it showed \"${SHOP_SEEN[$s.right_after]}\""
done
s=billing-service
expect_eq "$s: the order before the rename" "${SHOP_SEEN[$s.before]}" "${SHOP_OLD[1]}"
expect_eq "$s: the gateway's copy, read right after the gateway answered" "${SHOP_SEEN[$s.right_after]}" "${SHOP_NEW[1]}"
expect_eq "$s: the order after the rename" "${SHOP_SEEN[$s.after]}" "${SHOP_NEW[1]}"
# The owner holds what the gateway committed, and the restricted field never reached the copies.
expect_eq "the owner after the gateway's rename" "$(curl -sf "$(shop_url product-service.app)/products/p-2" | jq -r .name)" "${SHOP_NEW[1]}"
expect_eq "shipping's copy has no supplierEmail" \
  "$(curl -sf "$(shop_url shipping-service.data)/v1/data/products/p-1" | jq -r 'has("supplierEmail")')" false

# 2. The lag series in Prometheus (scraped every second): present for this run's copies, finite,
#    never negative, and 0 once converged. Each check retries for up to 90 s: the operator's lag
#    poll (1 s) covers every policy of the cluster in one pass, which takes long on a cluster
#    shared with a thousand others (a benchmark's); alone it takes a few seconds.
orders=$(shop_ns orders) shipping=$(shop_ns shipping)
sel="namespace=~\"$orders|$shipping\""
values_ok() {  # EXPR COUNT: COUNT series, every value finite and >= 0
  local out
  out=$(shop_prom_query "$1") || return 1
  [[ $(grep -c . <<<"$out") -eq $2 ]] || return 1
  awk '{ v = $NF; if (v !~ /^[0-9.e+-]+$/ || v + 0 < 0) bad = 1 } END { exit bad }' <<<"$out"
}
all_zero() {  # EXPR COUNT
  values_ok "$@" && shop_prom_query "$1" | awk '{ if ($NF + 0 != 0) bad = 1 } END { exit bad }'
}
eventually() {  # description command...
  local what=$1 deadline=$(($(date +%s) + 90))
  shift
  until "$@"; do
    shop_check_alive
    (($(date +%s) < deadline)) || { fail "$what (last: $(shop_prom_query "$2" | tr '\n' ' '))"; return; }
    sleep 0.5
  done
  pass
}
eventually "operator: datashare_policy_lag_events for orders and shipping, at 0" all_zero "datashare_policy_lag_events{$sel}" 2
eventually "operator: datashare_policy_lag_seconds finite and >= 0" values_ok "datashare_policy_lag_seconds{$sel}" 2
# Each copy's budget (spec.maxLag) is exported beside its lag, and the lag is within it.
within_budget() {
  local budgets
  budgets=$(shop_prom_query "datashare_policy_max_lag_seconds{$sel} > 0") || return 1
  [[ $(grep -c . <<<"$budgets") -eq 2 ]] || return 1
  [[ $(shop_prom_query "datashare_policy_lag_seconds{$sel} <= on(namespace, policy) datashare_policy_max_lag_seconds{$sel}" |
    grep -c .) -eq 2 ]]
}
eventually "operator: each copy's lag within its budget (datashare_policy_max_lag_seconds)" within_budget \
  "datashare_policy_max_lag_seconds{$sel}"
eventually "sidecars: datashare_replica_lag_events at 0" all_zero "datashare_replica_lag_events{$sel}" 2
eventually "sidecars: datashare_replica_lag_seconds finite and >= 0" values_ok "datashare_replica_lag_seconds{$sel}" 2
eventually "sidecars: datashare_propagation_seconds_sum finite and >= 0" values_ok "datashare_propagation_seconds_sum{$sel}" 2
# Three events reached each copy: p-1 and p-2 committed by the gateway, p-1 renamed by the owner.
eventually "sidecars: each copy measured the propagation of 3 events" \
  bash -c "[[ \"\$(curl -sf -G --data-urlencode 'query=datashare_propagation_seconds_count{$sel} >= 3' \
    '$(shop_url prometheus)/api/v1/query' | jq '.data.result | length')\" == 2 ]]"
eventually "gateway: 3 committed transactions" \
  bash -c "[[ \"\$(curl -sf -G --data-urlencode 'query=datashare_gateway_transactions_total{outcome=\"committed\"}' \
    '$(shop_url prometheus)/api/v1/query' | jq -r '.data.result[0].value[1]')\" == 3 ]]"

# The chart's Grafana dashboard, drawn from this Prometheus by hack/render-dashboard.py (what
# `make run` and docs/dashboard.svg use): every panel's query answers, and the panels this run
# feeds have series (the rate panels need a few scrapes after the scenario: retried for up to
# 60 s). Its stdout: series, points, type and title per panel.
dashboard_missing=""
dashboard_ok() {
  local panels spec n
  panels=$(python3 "$DATASHARE_ROOT/hack/render-dashboard.py" --prometheus "$(shop_url prometheus)" \
    --out "$S/dashboard.svg" --minutes 2) || { dashboard_missing="a panel's query failed"; return 1; }
  for spec in "Policies|1" "Lag per policy (seconds) against its budget|4" \
    "Propagation latency, owner write to applied copy|1" "Replica applies per second|2" \
    "Gateway transactions by outcome|1" "Sharing graph: owner -> consumer, by mode|3"; do
    n=$(awk -F'\t' -v t="${spec%|*}" '$4 == t { print $1 }' <<<"$panels")
    if [[ -z "$n" || "$n" -lt "${spec##*|}" ]]; then
      dashboard_missing="panel \"${spec%|*}\": ${n:-no} series, want >= ${spec##*|}"
      return 1
    fi
  done
  grep -q '<polyline' "$S/dashboard.svg" || { dashboard_missing="no line drawn"; return 1; }
}
deadline=$(($(date +%s) + 60))
until dashboard_ok; do
  (($(date +%s) < deadline)) || break
  sleep 2
done
if dashboard_ok; then pass; else fail "the rendered dashboard: $dashboard_missing"; fi

phase "Prometheus checked"

# 3. A copy held behind on purpose: the Order service's sidecar (hybrid, maxLag 5s) frozen with
#    SIGSTOP while the catalog renames p-1 again. The operator measures the lag from the topic and
#    the consumer group, not from the frozen sidecar: Prometheus sees the copy behind and, after
#    the budget, the DatashareCopyOverLagBudget alert's condition (the chart's rule, without its
#    `for: 5m`) holds for that policy alone. Thawed, the copy catches up, the lag returns to 0 and
#    the condition clears.
over_budget_expr=$(python3 -c 'import sys, yaml
for g in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for r in g["rules"]:
        if r.get("alert") == "DatashareCopyOverLagBudget": print(r["expr"])' "$DATASHARE_ROOT/charts/datashare/files/alerts.yaml")
[[ -n "$over_budget_expr" ]] || fail "DatashareCopyOverLagBudget not found in charts/datashare/files/alerts.yaml"
behind() {  # EXPR: at least one series, each value > 0
  local out
  out=$(shop_prom_query "$1") || return 1
  [[ -n "$out" ]] && awk '{ if ($NF + 0 <= 0) bad = 1 } END { exit bad }' <<<"$out"
}
over_budget() {  # this run's policies over their budget, one "namespace/policy" per line
  shop_prom_query "$over_budget_expr" | sed -nE 's/.*namespace="([^"]*)".*policy="([^"]*)".*/\1\/\2/p' |
    grep -E "^($orders|$shipping)/" || true
}
over_budget_only_orders() { [[ "$(over_budget)" == "$orders/"* && $(over_budget | grep -c .) -eq 1 ]]; }
none_over_budget() { [[ -z "$(over_budget)" ]]; }
frozen=$(pid_of order-service-sidecar)
kill -STOP "$frozen"
held_since=$(date +%s)
shop_edit_product p-1 "$(shop_product_json p-1 "Espresso mug, large" 5 220 cups@example.org)" >/dev/null ||
  fail "the Product service did not take the second rename of p-1"
sel_orders="namespace=\"$orders\""
eventually "operator: the frozen copy is seen behind (datashare_policy_lag_events > 0)" behind "datashare_policy_lag_events{$sel_orders}"
eventually "operator: the frozen copy's lag in seconds grows past 0" behind "datashare_policy_lag_seconds{$sel_orders}"
eventually "alert condition DatashareCopyOverLagBudget holds for the frozen copy alone" over_budget_only_orders "$over_budget_expr"
(($(date +%s) - held_since >= 5)) && pass || fail "the over-budget condition held before the 5 s budget passed"
expect_eq "shipping's copy, not frozen, has the second rename" \
  "$(wait_for shipping-service-sidecar 30 shop_has shipping-service p-1 "Espresso mug, large" && echo yes)" yes
kill -CONT "$frozen"
eventually "operator: the thawed copy catches up (datashare_policy_lag_events back to 0)" all_zero "datashare_policy_lag_events{$sel}" 2
eventually "alert condition DatashareCopyOverLagBudget clears" none_over_budget "$over_budget_expr"
wait_for order-service-sidecar 30 shop_has order-service p-1 "Espresso mug, large" && pass ||
  fail "the thawed copy never served the second rename"
phase "copy held behind and released"
# 4. Taking it down: every process but the operator stopped by SIGTERM (their ports closed), then
#    the policies and the product deleted while the operator runs (finalizers handled; this run's
#    topic deleted rather than retained), then the operator stopped the same way.
ports=()
for k in "${!SHOP_PORT[@]}"; do [[ "$k" == operator.* ]] || ports+=("${SHOP_PORT[$k]}"); done
if shop_stop_all operator; then pass; else fail "processes did not exit on SIGTERM"; fi
for p in "${ports[@]}"; do port_in_use "$p" && fail "port $p still open after the stop"; done
"$KC" -n "$(shop_ns catalog)" patch dataproduct products --type=merge -p '{"spec":{"topic":{"deletionPolicy":"Delete"}}}' >/dev/null
for ns in orders shipping billing; do "$KC" -n "$(shop_ns "$ns")" delete dsp --all --wait=false >/dev/null; done
"$KC" -n "$(shop_ns catalog)" delete dataproduct products --timeout=90s >/dev/null && pass || fail "the product was not deleted in 90 s"
if shop_stop_all; then pass; else fail "the operator did not exit on SIGTERM"; fi
port_in_use "${SHOP_PORT[operator.metrics]}" && fail "the operator's metrics port still open after the stop"

echo "e2e: $passed checks passed, $failed failed, $(($(date +%s) - started)) s"
((failed == 0))
