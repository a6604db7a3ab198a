#!/usr/bin/env bash
# The chart's prometheus-operator objects against the real API server (ctest
# chart_monitoring_test, label integration). The monitoring.coreos.com CRDs of the
# prometheus-operator release whose Go types the offline validator uses (hack/install-deps.sh
# keeps them in the cache) are installed for this test. The chart, installed with the
# ServiceMonitor, the PodMonitors and the PrometheusRule enabled, must then find those APIs
# served (its capability checks pass, NOTES warn of nothing), and the API server must admit each
# object against its CRD's schema, and refuse one the schema does not allow. The CRDs this test
# installed are removed at the end (chart_cluster_test, which checks the chart without them,
# holds the same RESOURCE_LOCK).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest, which starts the local cluster}"
kubectl=$(kubectl_bin) || fatal "kubectl not found: run hack/install-deps.sh"
version=$(awk '$1 == "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring" { print $2 }' \
  "$tests/validate/go.mod")
crd_dir="$DATASHARE_CACHE/monitoring-crds/$version"
kinds=(servicemonitors podmonitors prometheusrules)
for kind in "${kinds[@]}"; do
  [[ -f "$crd_dir/monitoring.coreos.com_$kind.yaml" ]] ||
    fatal "$crd_dir/monitoring.coreos.com_$kind.yaml missing: run hack/install-deps.sh"
done

suffix="mon-$$-$RANDOM"
ns="ds-$suffix" release="datashare-$suffix"
work=$(mktemp -d)
created_crds=()
k() { "$kubectl" "$@"; }
h() { "$helm" "$@"; }
cleanup() {
  "$helm" uninstall "$release" -n "$ns" --wait=false >/dev/null 2>&1 || true
  "$kubectl" delete clusterrole,clusterrolebinding -l "app.kubernetes.io/instance=$release" \
    --ignore-not-found >/dev/null 2>&1 || true
  "$kubectl" delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  # Only what this test added: a cluster that served these APIs before keeps them.
  for crd in "${created_crds[@]}"; do "$kubectl" delete crd "$crd" --ignore-not-found >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

k apply --server-side --force-conflicts -f "$chart/crds/" >/dev/null 2>&1 || fatal "the chart's CRDs not applied"
for kind in "${kinds[@]}"; do
  crd="$kind.monitoring.coreos.com"
  k get crd "$crd" >/dev/null 2>&1 || created_crds+=("$crd")
  k apply --server-side -f "$crd_dir/monitoring.coreos.com_$kind.yaml" >/dev/null || fatal "CRD $crd not applied"
  established() { [[ $(k get crd "$1" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}') == True ]]; }
  until_true 60 established "$crd" && pass || fail "CRD $crd not established in 60 s"
done
k create namespace "$ns" >/dev/null || fatal "namespace $ns not created"

enabled=(--set metrics.serviceMonitor.enabled=true --set metrics.podMonitors.enabled=true
  --set prometheusRule.enabled=true)
out=$(h install "$release" "$chart" -n "$ns" -f "$tests/values-minimal.yaml" "${enabled[@]}" 2>&1) ||
  fatal "helm install: $out"
pass
lacks "NOTES warn of no missing API" "$out" "does not serve"

sm=$(k get servicemonitor -n "$ns" -o json 2>&1)
[[ $(jq '.items | length' <<<"$sm") == 1 ]] && pass || fail "ServiceMonitors: want 1, got: $sm"
contains "the ServiceMonitor scrapes the metrics port" "$sm" '"port": "metrics"'
pm=$(k get podmonitor -n "$ns" -o json 2>&1)
[[ $(jq '.items | length' <<<"$pm") == 2 ]] && pass || fail "PodMonitors (sidecars, gateways): want 2, got: $pm"
pr=$(k get prometheusrule -n "$ns" -o json 2>&1)
want_alerts=$(python3 -c 'import sys, yaml; print(sum(len(g["rules"]) for g in yaml.safe_load(open(sys.argv[1]))["groups"]))' \
  "$chart/files/alerts.yaml")
got_alerts=$(jq '[.items[].spec.groups[].rules[]] | length' <<<"$pr")
[[ "$got_alerts" == "$want_alerts" && "$want_alerts" -gt 0 ]] && pass ||
  fail "PrometheusRule alerts as stored: want $want_alerts (files/alerts.yaml), got $got_alerts"

# The API server checks them against the CRD schema: a ServiceMonitor endpoint whose port is a
# list is refused.
h template "$release" "$chart" -n "$ns" --kube-version "$kube_version" -f "$tests/values-minimal.yaml" "${enabled[@]}" \
  --show-only templates/servicemonitor.yaml --api-versions monitoring.coreos.com/v1/ServiceMonitor >"$work/sm.yaml" ||
  fatal "helm template of the ServiceMonitor"
grep -q 'port: metrics' "$work/sm.yaml" || fatal "the rendered ServiceMonitor has no 'port: metrics': $(cat "$work/sm.yaml")"
sed -e 's/port: metrics/port: [metrics]/' "$work/sm.yaml" >"$work/sm-bad.yaml"
refuse "the API server refuses a ServiceMonitor its schema does not allow" "spec.endpoints[0].port in body must be of type string" \
  k apply --dry-run=server -f "$work/sm-bad.yaml"

check "helm uninstall" h uninstall "$release" -n "$ns"
left=$(k get servicemonitor,podmonitor,prometheusrule -n "$ns" -o name 2>&1)
[[ -z "$left" ]] && pass || fail "left after uninstall: $left"

finish
