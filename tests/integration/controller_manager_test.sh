#!/usr/bin/env bash
# The local cluster's kube-controller-manager really works: a Deployment gets its ReplicaSet,
# garbage collection follows owner references, and a deleted namespace is emptied and removed.
set -euo pipefail
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest (make test), which starts the local cluster}"
source "$DATASHARE_SOURCE_DIR/hack/lib/common.sh"
kubectl=$(kubectl_bin) || { echo "kubectl not found: run hack/install-deps.sh" >&2; exit 1; }
ns="kcm-test-$$-$RANDOM"
source "$DATASHARE_SOURCE_DIR/hack/lib/testing.sh"  # check, until_true, finish

"$kubectl" create namespace "$ns" >/dev/null
"$kubectl" -n "$ns" create deployment web --image=example.invalid/web:1 >/dev/null
check "a Deployment gets a ReplicaSet" until_true 60 bash -c "'$kubectl' -n $ns get replicasets -o name | grep -q ."

owner_uid=$("$kubectl" -n "$ns" create configmap owner -o jsonpath='{.metadata.uid}')
cat <<YAML | "$kubectl" apply -f - >/dev/null
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  namespace: $ns
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: "$owner_uid"}]
YAML
"$kubectl" -n "$ns" delete configmap owner >/dev/null
check "garbage collection removes a dependent of a deleted owner" \
  until_true 60 bash -c "! '$kubectl' -n $ns get configmap dependent"

"$kubectl" delete namespace "$ns" --wait=false >/dev/null
check "a deleted namespace is emptied and removed" until_true 90 bash -c "! '$kubectl' get namespace $ns"

finish
