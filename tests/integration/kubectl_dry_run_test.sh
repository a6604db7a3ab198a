#!/usr/bin/env bash
# `kubectl apply --dry-run=server` works against the local cluster: the API server validates
# and admits the objects without storing them, and rejects an invalid one with the field path.
set -euo pipefail
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest (make test), which starts the local cluster}"
source "$DATASHARE_SOURCE_DIR/hack/lib/common.sh"
kubectl=$(kubectl_bin) || { echo "kubectl not found: run hack/install-deps.sh" >&2; exit 1; }
name="dry-run-$$-$RANDOM"
fail() { echo "FAIL: $*" >&2; exit 1; }

manifest=$(cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: $name, namespace: default}
data: {a: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec: {containers: [{name: app, image: example.invalid/app:1}]}
YAML
)
out=$(echo "$manifest" | "$kubectl" apply --dry-run=server -f - 2>&1) || fail "dry run rejected: $out"
grep -q "configmap/$name created (server dry run)" <<<"$out" || fail "unexpected output: $out"
grep -q "deployment.apps/$name created (server dry run)" <<<"$out" || fail "unexpected output: $out"
if "$kubectl" get configmap "$name" -n default >/dev/null 2>&1; then fail "a dry run stored the ConfigMap"; fi

bad=$(echo "$manifest" | sed 's/replicas: 1/replicas: -3/' | "$kubectl" apply --dry-run=server -f - 2>&1) \
  && fail "a Deployment with negative replicas was admitted"
grep -q "spec.replicas" <<<"$bad" || fail "the rejection does not name the field: $bad"
echo "1 passed, 0 failed"
