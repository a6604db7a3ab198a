# shellcheck shell=bash
# Shared settings of the hack/ scripts: where things are cached and which versions are pinned.
# Sourced, never run.

DATASHARE_ROOT="${DATASHARE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
DATASHARE_CACHE="${DATASHARE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datashare}"

# Pinned versions. The Kubernetes one must match hack/kube/go.mod, the Kafka one hack/kafka/pom.xml.
KUBE_VERSION="v1.32.4"
KAFKA_VERSION="3.9.1"
HELM_VERSION="v3.16.4"

KUBE_BIN_DIR="$DATASHARE_CACHE/kube-$KUBE_VERSION/bin"
KAFKA_HOME="$DATASHARE_CACHE/kafka-$KAFKA_VERSION"
TOOLS_BIN_DIR="$DATASHARE_CACHE/tools/bin"

# Where the local cluster keeps its state (certificates, data, logs, pids, kubeconfig).
DATASHARE_STATE_DIR="${DATASHARE_STATE_DIR:-$DATASHARE_CACHE/cluster}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# kubectl: the machine's own when it is there, else the one install-deps.sh built.
kubectl_bin() {
  if [[ -x "$KUBE_BIN_DIR/kubectl" ]]; then echo "$KUBE_BIN_DIR/kubectl"
  elif command -v kubectl >/dev/null 2>&1; then command -v kubectl
  else return 1
  fi
}
