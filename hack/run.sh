#!/usr/bin/env bash
# The main job (`make run`): brings up the local control plane and Kafka, unless KUBECONFIG and
# DATASHARE_KAFKA_BOOTSTRAP point at your own, and says where they are.
# The operator is not built yet; when it is, this script runs it and the demo.
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
"$kc" version 2>/dev/null | sed 's/^/  /'
cat <<MSG

The local control plane and Kafka are running:
  export KUBECONFIG=$KUBECONFIG
  export DATASHARE_KAFKA_BOOTSTRAP=$DATASHARE_KAFKA_BOOTSTRAP
  kubectl get namespaces

The datashare operator itself is not part of this build yet: only the platform it runs on is.
Stop everything with: make cluster-down
MSG
