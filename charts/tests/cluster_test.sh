#!/usr/bin/env bash
# The chart against the local API server (ctest chart_cluster_test, label integration):
# - `helm template` with the minimal and the custom values, piped to `kubectl apply
#   --dry-run=server`: every object is admitted by the real API server;
# - `helm install`, then the objects checked; `helm upgrade` with changed values, and the change
#   checked on the objects; a wrong value refused at install and at upgrade; `helm uninstall`,
#   and everything of the release gone except the CRDs (Helm never deletes crds/).
# No kubelet here: the operator's pods never run, so nothing waits for them (no --wait).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest, which starts the local cluster}"
kubectl=$(kubectl_bin) || fatal "kubectl not found: run hack/install-deps.sh"

suffix="chart-$$-$RANDOM"
# The release name contains "datashare", so its objects are named after the release alone.
ns="ds-$suffix" kafka_ns="kafka-$suffix" release="datashare-$suffix"
work=$(mktemp -d)
cleanup() {
  "$helm" uninstall "$release" -n "$ns" --wait=false >/dev/null 2>&1 || true
  "$helm" uninstall "custom-$suffix" -n "$ns" --wait=false >/dev/null 2>&1 || true
  # Cluster-scoped objects of the releases, should an uninstall above not have run.
  "$kubectl" delete clusterrole,clusterrolebinding -l "app.kubernetes.io/instance in ($release,custom-$suffix)" \
    --ignore-not-found >/dev/null 2>&1 || true
  "$kubectl" delete namespace "$ns" "$kafka_ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
k() { "$kubectl" "$@"; }
h() { "$helm" "$@"; }

# The CRDs are shared with other tests and already installed; Helm would skip them as existing.
k apply --server-side --force-conflicts -f "$chart/crds/" >/dev/null 2>&1 || fatal "CRDs not applied"
k create namespace "$ns" >/dev/null || fatal "namespace $ns not created"
k create namespace "$kafka_ns" >/dev/null || fatal "namespace $kafka_ns not created"
sed -e "s/@NS@/$ns/g" -e "s/@KAFKA_NS@/$kafka_ns/g" "$tests/values-custom.yaml" >"$work/custom.yaml"

# 1. Server-side dry run of everything the chart renders, defaults and custom values.
for values in "$tests/values-minimal.yaml" "$work/custom.yaml"; do
  if ! rendered=$(h template "dry-$suffix" "$chart" -n "$ns" --kube-version "$kube_version" -f "$values" 2>&1); then
    fail "helm template -f $(basename "$values"): $rendered"; continue
  fi
  if out=$(printf '%s\n' "$rendered" | k apply --dry-run=server -f - 2>&1); then
    pass
    objects=$(grep -c 'created (server dry run)' <<<"$out")
    (( objects >= 8 )) && pass || fail "dry run of $(basename "$values"): only $objects objects: $out"
  else
    fail "kubectl apply --dry-run=server of $(basename "$values"): $out"
  fi
done
# The API server itself rejects what the schema would not catch: e.g. an invalid toleration.
bad=$(h template "dry-$suffix" "$chart" -n "$ns" --kube-version "$kube_version" -f "$tests/values-minimal.yaml" \
  --set 'operator.tolerations[0].operator=Sometimes' 2>&1)
refuse "API server refuses an invalid toleration" "Unsupported value: \"Sometimes\"" \
  bash -c 'printf "%s\n" "$1" | "$2" apply --dry-run=server -f -' _ "$bad" "$kubectl"

# 2. Install.
refuse "install refuses a wrong value" "operator.logLevel must be one of the following" \
  h install "$release" "$chart" -n "$ns" -f "$tests/values-minimal.yaml" --set operator.logLevel=loud
refuse "install refuses a missing Kafka address" "kafka.bootstrap is required" h install "$release" "$chart" -n "$ns"
[[ -z "$(h list -n "$ns" -q)" ]] && pass || fail "a refused install left a release: $(h list -n "$ns")"

out=$(h install "$release" "$chart" -n "$ns" -f "$tests/values-minimal.yaml" --set prometheusRule.enabled=true 2>&1) \
  || fatal "helm install: $out"
pass
contains "NOTES say where the operator is" "$out" "kubectl -n $ns get deployment $release"
contains "NOTES warn: no PrometheusRule API" "$out" "does not serve"
status=$(h status "$release" -n "$ns" -o json 2>&1)
contains "release deployed" "$status" '"status":"deployed"'

get() { k get "$@" -o json 2>&1; }
dep=$(get deployment "$release" -n "$ns")
contains "Deployment created" "$dep" '"kind": "Deployment"'
contains "Deployment flags" "$dep" '"--kafka-bootstrap=kafka.kafka:9092"'
contains "Deployment leader election namespace" "$dep" "\"--leader-election-namespace=$ns\""
contains "Deployment log level" "$dep" '"--zap-log-level=info"'
contains "Deployment read-only root" "$dep" '"readOnlyRootFilesystem": true'
contains "Deployment service account" "$dep" "\"serviceAccountName\": \"$release\""
check "ServiceAccount" k get serviceaccount "$release" -n "$ns"
svc=$(get service "$release-metrics" -n "$ns")
contains "metrics Service port" "$svc" '"targetPort": "metrics"'
contains "metrics Service selects the operator" "$svc" '"app.kubernetes.io/component": "operator"'
cm=$(get configmap "$release-dashboard" -n "$ns")
contains "dashboard ConfigMap label" "$cm" '"grafana_dashboard": "1"'
contains "dashboard ConfigMap content" "$cm" 'datashare-overview'
cr=$(get clusterrole "$release")
contains "ClusterRole rules" "$cr" '"datasharingpolicies/status"'
lacks "ClusterRole without wildcards" "$cr" '"*"'
check "ClusterRoleBinding" k get clusterrolebinding "$release"
check "leader election Role" k get role "$release-leader-election" -n "$ns"
check "leader election RoleBinding" k get rolebinding "$release-leader-election" -n "$ns"
# RBAC as the API server evaluates it, for the operator's ServiceAccount.
sa="system:serviceaccount:$ns:$release"
for allowed in "patch deployments.apps -n default" "patch datasharingpolicies.datashare.io/status -n default" \
  "create services -n default" "watch namespaces" "create events.events.k8s.io -n default" \
  "update leases.coordination.k8s.io -n $ns" "patch statefulsets.apps -n default" \
  "create persistentvolumeclaims -n default"; do
  # shellcheck disable=SC2086
  check "operator may $allowed" k auth can-i $allowed --as "$sa"
done
for denied in "get secrets -n default" "delete statefulsets.apps -n default" "create pods -n default" \
  "update leases.coordination.k8s.io -n default" "delete datasharingpolicies.datashare.io -n default" \
  "create clusterroles.rbac.authorization.k8s.io" "update persistentvolumeclaims -n default" \
  "update deployments.apps -n default" "update datasharingpolicies.datashare.io/status -n default" \
  "get configmaps -n default"; do
  # shellcheck disable=SC2086
  refuse "operator may not $denied" "no" k auth can-i $denied --as "$sa"
done

# 3. Upgrade: changed values reach the objects.
refuse "upgrade refuses a wrong value" "operator.replicas: Invalid type" \
  h upgrade "$release" "$chart" -n "$ns" -f "$tests/values-minimal.yaml" --set-string operator.replicas=many
out=$(h upgrade "$release" "$chart" -n "$ns" -f "$tests/values-minimal.yaml" --set operator.logLevel=debug \
  --set operator.replicas=2 --set sidecar.resources.memoryLimit=256Mi --set sidecar.busyPollMicros=100 \
  --set kafka.securitySecret.name=kafka-client \
  --set kafka.securitySecret.namespace="$kafka_ns" --set grafanaDashboard.enabled=false 2>&1) || fatal "helm upgrade: $out"
pass
dep=$(get deployment "$release" -n "$ns")
contains "upgrade: log level" "$dep" '"--zap-log-level=debug"'
lacks "upgrade: old log level gone" "$dep" '"--zap-log-level=info"'
contains "upgrade: replicas" "$dep" '"replicas": 2'
contains "upgrade: sidecar limit" "$dep" '"--sidecar-memory-limit=256Mi"'
contains "upgrade: sidecar busy poll" "$dep" '"--sidecar-busy-poll-micros=100"'
contains "upgrade: Kafka secret flag" "$dep" "\"--kafka-security-secret=$kafka_ns/kafka-client\""
contains "upgrade: generation moved" "$dep" '"generation": 2'
check "upgrade: Kafka secret Role in its namespace" k get role "$release-kafka-secret" -n "$kafka_ns"
check "upgrade: operator may get the Kafka secret" k auth can-i get secrets/kafka-client -n "$kafka_ns" --as "$sa"
refuse "upgrade: but no other secret" "no" k auth can-i get secrets/other -n "$kafka_ns" --as "$sa"
refuse "upgrade: dashboard ConfigMap removed" "NotFound" k get configmap "$release-dashboard" -n "$ns"
history=$(h history "$release" -n "$ns" 2>&1)
contains "upgrade: revision 2 deployed" "$history" "2       "

# 4. A second release beside the first, with every custom value (cluster-scoped names differ).
out=$(h install "custom-$suffix" "$chart" -n "$ns" -f "$work/custom.yaml" 2>&1) || fail "install with custom values: $out"
check "custom release Deployment" k get deployment ds-custom -n "$ns"
check "custom release dashboard in its namespace" k get configmap ds-custom-dashboard -n "$ns"
check "custom release uninstall" h uninstall "custom-$suffix" -n "$ns"

# 5. Uninstall: everything of the release goes, the CRDs stay.
check "helm uninstall" h uninstall "$release" -n "$ns"
for object in "deployment/$release -n $ns" "serviceaccount/$release -n $ns" "service/$release-metrics -n $ns" \
  "clusterrole/$release" "clusterrolebinding/$release" "role/$release-leader-election -n $ns" \
  "rolebinding/$release-leader-election -n $ns" "role/$release-kafka-secret -n $kafka_ns"; do
  # shellcheck disable=SC2086
  refuse "uninstall removed $object" "NotFound" k get $object
done
check "CRDs stay after uninstall" k get crd dataproducts.datashare.io datasharingpolicies.datashare.io
[[ -z "$(h list -n "$ns" -q)" ]] && pass || fail "releases left: $(h list -n "$ns")"

finish
