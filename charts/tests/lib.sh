# shellcheck shell=bash
# Shared by the chart tests: tools, counters and the validator. Sourced, never run.
set -uo pipefail
root="${DATASHARE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
# shellcheck source=../../hack/lib/common.sh
source "$root/hack/lib/common.sh"
chart="$root/charts/datashare"
tests="$root/charts/tests"
# The version helm renders for offline (the chart's kubeVersion must accept it): the local cluster's.
kube_version="${KUBE_VERSION#v}"

# shellcheck source=../../hack/lib/testing.sh
source "$root/hack/lib/testing.sh"  # pass/fail/fatal/finish, check, refuse, contains, lacks, until_true

helm="$TOOLS_BIN_DIR/helm"
[[ -x "$helm" ]] || fatal "helm not found at $helm: run hack/install-deps.sh"

# The validator (charts/tests/validate, Go): built into the build tree, modules from Go's module
# cache (hack/install-deps.sh downloads them, so this works offline), its compile cache kept
# outside the repository.
build_validator() {
  # One binary per test script: ctest may run two of them at once.
  local out="${DATASHARE_BINARY_DIR:-$root/build/charts}/charts/validate-$(basename "$0" .sh)"
  mkdir -p "$(dirname "$out")"
  command -v go >/dev/null || fatal "go not found: run hack/install-deps.sh"
  (cd "$tests/validate" && GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local GOCACHE="$DATASHARE_CACHE/go-build-validate" \
    go build -o "$out" .) >&2 || fatal "charts/tests/validate does not build (modules missing? run hack/install-deps.sh)"
  echo "$out"
}
