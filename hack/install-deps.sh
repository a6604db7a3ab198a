#!/usr/bin/env bash
# Installs everything datashare builds, tests and runs with, on a fresh Debian 12 machine.
#
#   hack/install-deps.sh            # all of it
#   hack/install-deps.sh --check    # report what is missing, change nothing
#
# Idempotent: each step checks what is already there and does nothing then, so a warm
# machine rebuilds nothing and the script works offline once everything is cached.
# Caches live outside the repository, under $DATASHARE_CACHE (default ~/.cache/datashare):
#   kube-<version>/bin   kube-apiserver, kube-controller-manager (and kubectl if the
#                        machine has none), built with Go from hack/kube/go.mod
#   kafka-<version>/libs the Kafka broker's jars, from Maven Central through hack/kafka/pom.xml
#   tools/bin            helm, built with `go install`
# and Go's module cache (~/go/pkg/mod) holds the modules of charts/tests/validate (the chart
# tests' validator: Grafana foundation SDK, prometheus-operator API types), so it builds offline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1

# Debian packages: build toolchain and libraries, then the servers and tools the tests use.
DEBIAN_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git curl ca-certificates openssl iproute2 procps
  libcpprest-dev libyaml-cpp-dev libboost-all-dev librdkafka-dev prometheus-cpp-dev librocksdb-dev
  nlohmann-json3-dev libssl-dev googletest libgtest-dev libgmock-dev libbenchmark-dev
  clang-format clang-tidy clang libclang-rt-14-dev
  etcd-server prometheus kcat redis-server redis-tools wrk haproxy jq python3-yaml
  golang-go default-jdk-headless maven
)
# The machine image may carry Go, Java and Maven outside Debian's packages; those count.
declare -A PROVIDED_BY_COMMAND=([golang-go]=go [default-jdk-headless]=java [maven]=mvn)

missing_packages() {
  local p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    if [[ -n "${PROVIDED_BY_COMMAND[$p]:-}" ]] && command -v "${PROVIDED_BY_COMMAND[$p]}" >/dev/null 2>&1; then
      continue
    fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

install_debian_packages() {
  local missing
  missing=$(missing_packages | tr '\n' ' ')
  if [[ -z "${missing// /}" ]]; then log "debian packages: present"; return; fi
  if (( CHECK_ONLY )); then log "debian packages missing: $missing"; return; fi
  log "debian packages: installing $missing"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# Kubernetes v1.32 needs Go 1.23 or newer; Debian 12's golang-go is 1.19. The machine image of
# this project ships a current Go; say so clearly where it does not.
require_go() {
  local v
  v=$(go env GOVERSION 2>/dev/null | sed 's/^go//') || v=""
  local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
  if [[ -z "$v" ]] || (( major < 1 || (major == 1 && minor < 23) )); then
    die "Go ${v:-(none)} is too old to build Kubernetes $KUBE_VERSION: install Go 1.23+ (it is on this project's machine image)"
  fi
}

go_env() {
  require_go
  # Some k8s.io modules are not in the checksum database the module proxy mirrors here; the
  # committed hack/kube/go.sum pins every module's hash instead.
  export GONOSUMDB="k8s.io" GOFLAGS="-mod=mod" GOTOOLCHAIN=local
  # The compiled packages (over 3 GB for Kubernetes and helm) are of no use once the binaries
  # are cached: build in a throw-away cache. The downloaded modules stay in Go's module cache,
  # so a rebuild works offline.
  export GOCACHE="$DATASHARE_CACHE/go-build.tmp"
}

go_clean() { rm -rf "$DATASHARE_CACHE/go-build.tmp"; }

kube_ldflags() {
  local v="${KUBE_VERSION#v}" ; local major="${v%%.*}" rest="${v#*.}"; local minor="${rest%%.*}"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    printf -- '-X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean ' \
      "$pkg" "$KUBE_VERSION" "$pkg" "$major" "$pkg" "$minor" "$pkg"
  done
  printf -- '-s -w'
}

install_kube() {
  local wanted=(kube-apiserver kube-controller-manager) todo=() b
  kubectl_bin >/dev/null 2>&1 || wanted+=(kubectl)
  for b in "${wanted[@]}"; do
    if [[ -x "$KUBE_BIN_DIR/$b" ]] && "$KUBE_BIN_DIR/$b" --version 2>/dev/null | grep -q "$KUBE_VERSION"; then continue; fi
    if [[ "$b" == kubectl && -x "$KUBE_BIN_DIR/$b" ]]; then continue; fi
    todo+=("$b")
  done
  if (( ${#todo[@]} == 0 )); then log "kubernetes $KUBE_VERSION: present in $KUBE_BIN_DIR"; return; fi
  if (( CHECK_ONLY )); then log "kubernetes binaries missing: ${todo[*]}"; return; fi
  log "kubernetes $KUBE_VERSION: building ${todo[*]} with Go (first time: several minutes)"
  go_env
  mkdir -p "$KUBE_BIN_DIR"
  local pkgs=()
  for b in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$DATASHARE_ROOT/hack/kube" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$KUBE_BIN_DIR/" "${pkgs[@]}")
  "$KUBE_BIN_DIR/kube-apiserver" --version
}

install_kafka() {
  if [[ -f "$KAFKA_HOME/.complete" ]]; then log "kafka $KAFKA_VERSION: present in $KAFKA_HOME"; return; fi
  if (( CHECK_ONLY )); then log "kafka $KAFKA_VERSION: missing"; return; fi
  log "kafka $KAFKA_VERSION: resolving the broker's jars from Maven Central"
  rm -rf "$KAFKA_HOME"
  mkdir -p "$KAFKA_HOME"
  mvn -q -B -f "$DATASHARE_ROOT/hack/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs"
  ls "$KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null
  touch "$KAFKA_HOME/.complete"
}

install_helm() {
  if [[ -x "$TOOLS_BIN_DIR/helm" ]] && "$TOOLS_BIN_DIR/helm" version --short 2>/dev/null | grep -q "$HELM_VERSION"; then
    log "helm $HELM_VERSION: present"; return
  fi
  if (( CHECK_ONLY )); then log "helm $HELM_VERSION: missing"; return; fi
  log "helm $HELM_VERSION: go install"
  go_env
  mkdir -p "$TOOLS_BIN_DIR"
  GOBIN="$TOOLS_BIN_DIR" GONOSUMDB="k8s.io,helm.sh" go install \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# The chart tests' validator (charts/tests/validate) builds from Go's module cache; download its
# modules once (only those providing packages it imports), pinned by its go.sum.
install_validator_modules() {
  local dir="$DATASHARE_ROOT/charts/tests/validate"
  if (cd "$dir" && GOFLAGS=-mod=readonly GOPROXY=off GOTOOLCHAIN=local go list -deps . >/dev/null 2>&1); then
    log "chart validator modules: present"; return
  fi
  if (( CHECK_ONLY )); then log "chart validator modules: missing"; return; fi
  log "chart validator modules: downloading"
  require_go
  (cd "$dir" && GOFLAGS=-mod=readonly GOTOOLCHAIN=local go list -deps . >/dev/null)
}

# The prometheus-operator CRDs the chart's monitors are checked against on the local API server
# (charts/tests/monitoring_test.sh): from the prometheus-operator module, at the version whose Go
# types the validator uses, through Go's module proxy; kept in the cache.
MONITORING_CRD_DIR="$DATASHARE_CACHE/monitoring-crds"
install_monitoring_crds() {
  local version dir kind
  version=$(awk '$1 == "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring" { print $2 }' \
    "$DATASHARE_ROOT/charts/tests/validate/go.mod")
  [[ -n "$version" ]] || die "charts/tests/validate/go.mod names no prometheus-operator version"
  if [[ -f "$MONITORING_CRD_DIR/$version/monitoring.coreos.com_servicemonitors.yaml" &&
    -f "$MONITORING_CRD_DIR/$version/monitoring.coreos.com_podmonitors.yaml" &&
    -f "$MONITORING_CRD_DIR/$version/monitoring.coreos.com_prometheusrules.yaml" ]]; then
    log "prometheus-operator CRDs $version: present"; return
  fi
  if (( CHECK_ONLY )); then log "prometheus-operator CRDs $version: missing"; return; fi
  log "prometheus-operator CRDs $version: downloading"
  require_go
  dir=$(cd /tmp && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$version" | jq -r .Dir) || die "prometheus-operator $version: download failed"
  mkdir -p "$MONITORING_CRD_DIR/$version.tmp"
  for kind in servicemonitors podmonitors prometheusrules; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$MONITORING_CRD_DIR/$version.tmp/"
  done
  rm -rf "${MONITORING_CRD_DIR:?}/$version"
  mv "$MONITORING_CRD_DIR/$version.tmp" "$MONITORING_CRD_DIR/$version"
}

# promtool (alert rule tests) comes with Debian's prometheus package; say so if it is missing.
check_promtool() {
  if command -v promtool >/dev/null 2>&1; then log "promtool: $(promtool --version 2>&1 | head -1)"
  elif (( CHECK_ONLY )); then log "promtool: missing (Debian package prometheus)"
  else die "promtool missing after installing Debian's prometheus package"
  fi
}

# One installer at a time: two concurrent runs (two checkouts' `make test`) would build the same
# cache paths at once. The second waits, then finds everything installed and does nothing.
if (( ! CHECK_ONLY )); then
  mkdir -p "$DATASHARE_CACHE"
  exec {lock_fd}>"$DATASHARE_CACHE/install.lock"
  if ! flock -n "$lock_fd"; then
    log "another install-deps.sh is running; waiting for it"
    flock "$lock_fd"
  fi
fi

install_debian_packages
check_promtool
install_kube
install_kafka
install_helm
install_validator_modules
install_monitoring_crds
go_clean
log "done; cache: $DATASHARE_CACHE ($(du -sh "$DATASHARE_CACHE" 2>/dev/null | cut -f1))"
