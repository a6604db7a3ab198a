#!/usr/bin/env bash
# Alerts and dashboard offline (ctest chart_observability_test, label unit):
# - files/alerts.yaml passes `promtool check rules`, and `promtool test rules alerts_test.yaml`
#   tests every alert (firing with its labels and annotations, and cases that must not fire);
# - files/dashboards/datashare.json decodes STRICTLY into the Grafana foundation SDK's types and
#   passes the validator's checks (panel types, Prometheus queries, ids, grid, variables), and
#   every PromQL expression in it parses (promtool, as recording rules);
# - alerts and dashboard name only metrics the components export (the list below is the contract
#   with the operator, sidecar and gateway), and the dashboard shows what issue #8 asks for.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v promtool >/dev/null || fatal "promtool not found: run hack/install-deps.sh (Debian package prometheus)"
validate=$(build_validator)
alerts="$chart/files/alerts.yaml"
dashboard="$chart/files/dashboards/datashare.json"

# The metrics the components export (base names; histograms add _bucket, _sum, _count).
known_metrics=(
  controller_runtime_reconcile_total controller_runtime_reconcile_errors_total controller_runtime_reconcile_time_seconds
  workqueue_depth leader_election_master_status
  datashare_policy_lag_events datashare_policy_lag_seconds datashare_policy_max_lag_seconds datashare_sharing_edge
  datashare_replica_apply_total datashare_replica_skipped_stale_total datashare_replica_dlq_total
  datashare_replica_lag_events datashare_replica_lag_seconds datashare_propagation_seconds
  datashare_publisher_outbox_depth datashare_publish_total datashare_publisher_delivered_total
  datashare_sync_request_duration_seconds datashare_sync_circuit_state datashare_sync_cache_hits_total
  datashare_sync_cache_misses_total datashare_sync_inflight datashare_sync_fallback_total
  datashare_gateway_transactions_total datashare_gateway_transaction_duration_seconds datashare_gateway_in_doubt
  datashare_gateway_participant_errors_total
)
unknown_metrics() {  # file: names that look like our metrics but are not in the list
  local name base
  for name in $(grep -oE '\b(datashare_[a-z_]+|controller_runtime_[a-z_]+|workqueue_[a-z_]+|leader_election_[a-z_]+)\b' "$1" | sort -u); do
    base=${name%_bucket}; base=${base%_sum}; base=${base%_count}
    [[ " ${known_metrics[*]} " == *" $base "* ]] || echo "$name"
  done
}

# 1. Alerts.
check "promtool check rules files/alerts.yaml" promtool check rules "$alerts"
check "promtool test rules charts/tests/alerts_test.yaml" promtool test rules "$tests/alerts_test.yaml"
mapfile -t alert_names < <(sed -nE 's/^ *- alert: *([A-Za-z0-9_]+) *$/\1/p' "$alerts")
(( ${#alert_names[@]} >= 7 )) && pass || fail "expected at least 7 alerts, found ${#alert_names[@]}: ${alert_names[*]}"
for wanted in DatashareCopyOverLagBudget DatashareConsumerStalled DatashareSyncCircuitOpen \
  DatashareGatewayTransactionsInDoubt DatashareDeadLetterEvents DatashareReconcileErrors; do
  [[ " ${alert_names[*]} " == *" $wanted "* ]] && pass || fail "alert $wanted missing from files/alerts.yaml"
done
for name in "${alert_names[@]}"; do
  # A test where the alert fires (exp_labels under its alertname) and one where it must not (exp_alerts: []).
  firing=$(grep -A2 -E "alertname: $name\$" "$tests/alerts_test.yaml" | grep -c 'exp_labels')
  silent=$(grep -A1 -E "alertname: $name\$" "$tests/alerts_test.yaml" | grep -c 'exp_alerts: \[\]')
  (( firing > 0 && silent > 0 )) && pass || fail "alert $name: needs a firing and a silent case in alerts_test.yaml (has $firing, $silent)"
  grep -A12 -E "^ *- alert: $name\$" "$alerts" | grep -q 'severity:' && pass || fail "alert $name has no severity label"
done
unknown=$(unknown_metrics "$alerts")
[[ -z "$unknown" ]] && pass || fail "alerts use metrics no component exports: $unknown"

# 2. Dashboard.
check "dashboard decodes strictly and passes the validator" "$validate" dashboard "$dashboard" --exprs-out "$work/exprs.yaml"
check "every dashboard expression parses (promtool)" promtool check rules "$work/exprs.yaml"
exprs=$(grep -c 'record:' "$work/exprs.yaml")
(( exprs >= 30 )) && pass || fail "only $exprs expressions in the dashboard"
unknown=$(unknown_metrics "$dashboard")
[[ -z "$unknown" ]] && pass || fail "dashboard uses metrics no component exports: $unknown"
json=$(cat "$dashboard")
for needle in datashare_policy_lag_seconds datashare_policy_lag_events datashare_policy_max_lag_seconds \
  datashare_propagation_seconds_bucket datashare_sync_request_duration_seconds_bucket datashare_sync_circuit_state \
  datashare_gateway_transactions_total datashare_replica_dlq_total controller_runtime_reconcile_total \
  controller_runtime_reconcile_errors_total datashare_sharing_edge '"type": "nodeGraph"' '"refId": "edges"' \
  '"refId": "nodes"' '\"mode\"' 'histogram_quantile(0.99' '"text": "open"'; do
  contains "dashboard shows $needle" "$json" "$needle"
done
# The validator is strict (else the checks above prove nothing): an unknown option, a misspelt
# query field and an unknown panel type are each refused.
sed '0,/"colorMode": "value"/s//"colourMode": "value"/' "$dashboard" >"$work/bad1.json"
refuse "validator refuses an unknown panel option" "unexpected field 'colourMode'" "$validate" dashboard "$work/bad1.json"
sed '0,/"legendFormat"/s//"legendFormatt"/' "$dashboard" >"$work/bad2.json"
refuse "validator refuses an unknown query field" "unexpected field 'legendFormatt'" "$validate" dashboard "$work/bad2.json"
sed '0,/"type": "timeseries"/s//"type": "timeseriez"/' "$dashboard" >"$work/bad3.json"
refuse "validator refuses an unknown panel type" 'panel type "timeseriez"' "$validate" dashboard "$work/bad3.json"
sed '0,/\$policy/s//$polcy/' "$dashboard" >"$work/bad4.json"
refuse "validator refuses an undefined variable" 'undefined variable $polcy' "$validate" dashboard "$work/bad4.json"

finish
