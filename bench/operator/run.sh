#!/usr/bin/env bash
# P8 and P9 on the local cluster (started if needed), release build.
#   bench/operator/run.sh [memory|watch|all]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/hack/lib/common.sh"
bin="$root/build/release/bench/bin/informer_bench"
[[ -x "$bin" ]] || die "$bin not built: make build PRESET=release"
if [[ -z "${KUBECONFIG:-}" ]]; then
  "$root/hack/local-cluster.sh" up >/dev/null
  # shellcheck disable=SC1091
  source "$DATASHARE_STATE_DIR/env"
fi
what=${1:-all}
[[ "$what" == memory || "$what" == all ]] && "$bin" memory
[[ "$what" == watch || "$what" == all ]] && "$bin" watch
exit 0
