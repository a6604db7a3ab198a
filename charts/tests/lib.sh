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

passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*" >&2; }
fatal() { printf 'FATAL: %s\n' "$*" >&2; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
finish() { echo "$passed passed, $failed failed"; (( failed == 0 )); exit $?; }

check() {  # description, command...: the command must succeed
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then pass; else fail "$what: $out"; fi
}
refuse() {  # description, expected message, command...: the command must fail, saying the message
  local what=$1 needle=$2; shift 2
  local out
  if out=$("$@" 2>&1); then fail "$what: accepted"; return; fi
  if [[ "$out" == *"$needle"* ]]; then pass; else fail "$what: \"$needle\" not in: $out"; fi
}
contains() {  # description, text, needle
  if [[ "$2" == *"$3"* ]]; then pass; else fail "$1: \"$3\" not in output"; fi
}
lacks() {  # description, text, needle
  if [[ "$2" != *"$3"* ]]; then pass; else fail "$1: \"$3\" should not be in output"; fi
}

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
