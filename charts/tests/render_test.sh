#!/usr/bin/env bash
# The chart offline (ctest chart_render_test, label unit): the CRDs are the repository's, `helm lint
# --strict` passes, the schema rejects wrong values with their path, the rendered objects are what
# the operator needs (flags, probes, security context, RBAC without wildcards), and the
# prometheus-operator objects appear only when enabled AND served, and decode strictly into the
# prometheus-operator's own Go types.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
validate=$(build_validator)

# 1. crds/ and charts/datashare/crds/ are the same files (hack/sync-chart-crds.sh copies them).
if out=$(diff -r --exclude='*.sh' --exclude='*.md' --exclude='CMakeLists.txt' "$root/crds" "$chart/crds" 2>&1); then pass
else fail "charts/datashare/crds differs from crds/ (run hack/sync-chart-crds.sh): $out"; fi

# 2. Lint, with the minimal and the custom values.
sed -e 's/@NS@/team-a/g' -e 's/@KAFKA_NS@/kafka/g' "$tests/values-custom.yaml" >"$work/custom.yaml"
check "helm lint --strict (minimal values)" "$helm" lint --strict "$chart" -f "$tests/values-minimal.yaml"
check "helm lint --strict (custom values)" "$helm" lint --strict "$chart" -f "$work/custom.yaml"

render() { "$helm" template rel "$chart" --namespace datashare-system --kube-version "$kube_version" "$@"; }

# 3. Wrong values: refused by values.schema.json (or by a template's `required`), naming the value.
refuse "no Kafka" "kafka.bootstrap is required" render
refuse "Kafka address without a port" "kafka.bootstrap" render --set kafka.bootstrap=kafka
refuse "unknown top-level value" "Additional property replicas is not allowed" render -f "$tests/values-minimal.yaml" --set replicas=3
refuse "misspelt operator value" "Additional property logLevell is not allowed" render -f "$tests/values-minimal.yaml" --set operator.logLevell=debug
refuse "log level" "operator.logLevel must be one of the following" render -f "$tests/values-minimal.yaml" --set operator.logLevel=verbose
refuse "log format" "operator.logFormat must be one of the following" render -f "$tests/values-minimal.yaml" --set operator.logFormat=text
refuse "negative replicas" "operator.replicas: Must be greater than or equal to 0" render -f "$tests/values-minimal.yaml" --set operator.replicas=-1
refuse "replicas as a string" "operator.replicas: Invalid type" render -f "$tests/values-minimal.yaml" --set-string operator.replicas=two
refuse "two replicas without leader election" "operator.leaderElection.enabled" render -f "$tests/values-minimal.yaml" \
  --set operator.replicas=2 --set operator.leaderElection.enabled=false
refuse "lag poll interval" "operator.lagPollInterval: Does not match pattern" render -f "$tests/values-minimal.yaml" --set-string operator.lagPollInterval=10
refuse "sidecar memory" "sidecar.resources.memoryLimit: Does not match pattern" render -f "$tests/values-minimal.yaml" --set sidecar.resources.memoryLimit=lots
refuse "sidecar I/O threads" "sidecar.ioThreads: Must be greater than or equal to 1" render -f "$tests/values-minimal.yaml" --set sidecar.ioThreads=0
refuse "sidecar busy poll" "sidecar.busyPollMicros: Must be less than or equal to 1000" render -f "$tests/values-minimal.yaml" --set sidecar.busyPollMicros=5000
refuse "image digest" "operator.image.digest: Does not match pattern" render -f "$tests/values-minimal.yaml" --set operator.image.digest=latest
refuse "watch namespace" "operator.watchNamespace: Does not match pattern" render -f "$tests/values-minimal.yaml" --set operator.watchNamespace=Team_A
refuse "metrics port" "metrics.service.port: Must be less than or equal to 65535" render -f "$tests/values-minimal.yaml" --set metrics.service.port=70000
refuse "extra args must be flags" "operator.extraArgs.0: Does not match pattern" render -f "$tests/values-minimal.yaml" --set 'operator.extraArgs[0]=debug'
refuse "existing service account needs a name" "serviceAccount.name is required" render -f "$tests/values-minimal.yaml" --set serviceAccount.create=false
refuse "Kubernetes too old for the CRDs" "incompatible with Kubernetes v1.29" \
  "$helm" template rel "$chart" -f "$tests/values-minimal.yaml" --kube-version 1.29.0

# 4. Defaults: the objects, the operator's flags and its security.
default=$(render -f "$tests/values-minimal.yaml" 2>&1) || fatal "default render failed: $default"
printf '%s\n' "$default" >"$work/default.yaml"
kinds=$(grep -E '^kind: ' "$work/default.yaml" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
contains "default objects" "$kinds" " 1 kind: ClusterRole; 1 kind: ClusterRoleBinding; 1 kind: ConfigMap; 1 kind: Deployment; 1 kind: Role; 1 kind: RoleBinding; 1 kind: Service; 1 kind: ServiceAccount;"
for flag in --metrics-bind-address=:8080 --health-probe-bind-address=:8081 --leader-elect \
  --leader-election-id=datashare-operator --leader-election-namespace=datashare-system --zap-log-level=info \
  --log-format=logfmt --kafka-bootstrap=kafka.kafka:9092 --sidecar-image=datashare-sidecar:0.1.0 \
  --gateway-image=datashare-gateway:0.1.0 --sidecar-cpu-request=50m --sidecar-memory-request=32Mi \
  --sidecar-memory-limit=128Mi --sidecar-io-threads=1 --sidecar-busy-poll-micros=0 --lag-poll-interval=10s \
  "--watch-namespace="$'\n'; do
  contains "default flag ${flag%$'\n'}" "$default" "- $flag"
done
lacks "no Kafka secret by default" "$default" "--kafka-security-secret"
contains "operator image" "$default" 'image: "datashare-operator:0.1.0"'
contains "operator binary" "$default" "command: [/usr/local/bin/datashare-operator]"
contains "liveness probe" "$default" $'livenessProbe:\n            httpGet:\n              path: /healthz\n              port: health'
contains "readiness probe" "$default" $'readinessProbe:\n            httpGet:\n              path: /readyz\n              port: health'
contains "non-root pod" "$default" "runAsNonRoot: true"
contains "read-only root filesystem" "$default" "readOnlyRootFilesystem: true"
contains "no privilege escalation" "$default" "allowPrivilegeEscalation: false"
contains "no capabilities" "$default" $'capabilities:\n              drop:\n              - ALL'
contains "dashboard ConfigMap label" "$default" 'grafana_dashboard: "1"'
contains "dashboard content" "$default" '"uid": "datashare-overview"'
lacks "no ServiceMonitor unless enabled" "$default" "kind: ServiceMonitor"
lacks "no PrometheusRule unless enabled" "$default" "kind: PrometheusRule"

# RBAC: no wildcard anywhere, exactly the verbs the operator uses.
lacks "no wildcard in RBAC" "$(grep -E '^\s*(- )?(verbs|resources|apiGroups):' "$work/default.yaml")" '*'
for rule in \
  $'- apiGroups: [datashare.io]\n    resources: [dataproducts, datasharingpolicies]\n    verbs: [list, watch, patch]' \
  $'- apiGroups: [datashare.io]\n    resources: [dataproducts/status, datasharingpolicies/status]\n    verbs: [patch]' \
  $'- apiGroups: [datashare.io]\n    resources: [dataproducts/finalizers, datasharingpolicies/finalizers]\n    verbs: [update]' \
  $'- apiGroups: [""]\n    resources: [configmaps, services]\n    verbs: [list, watch, create, patch, delete]' \
  $'- apiGroups: [apps]\n    resources: [deployments]\n    verbs: [list, watch, create, patch, delete]' \
  $'- apiGroups: [""]\n    resources: [persistentvolumeclaims]\n    verbs: [create, delete]' \
  $'- apiGroups: [apps]\n    resources: [statefulsets]\n    verbs: [list, watch, patch]' \
  $'- apiGroups: [""]\n    resources: [namespaces]\n    verbs: [list, watch]' \
  $'- apiGroups: [events.k8s.io]\n    resources: [events]\n    verbs: [create, patch]' \
  $'- apiGroups: [coordination.k8s.io]\n    resources: [leases]\n    verbs: [get, create, update]'; do
  contains "RBAC rule ${rule%%$'\n'*} ${rule#*resources: }" "$default" "$rule"
done
lacks "no Secret access without a Kafka secret" "$default" "resources: [secrets]"
lacks "every product and policy served by default (no --resource-selector)" "$default" "--resource-selector"

# 5. Custom values: every one reaches the objects.
custom=$(render -f "$work/custom.yaml" 2>&1) || fatal "custom render failed: $custom"
for needle in "name: ds-custom" "replicas: 2" "--leader-election-id=datashare-custom" "--zap-log-level=debug" \
  "--log-format=json" "--kafka-bootstrap=kafka-0.kafka:9093,kafka-1.kafka:9093" \
  "--kafka-security-secret=kafka/kafka-client" "--watch-namespace=team-a" "--lag-poll-interval=2s" \
  '- "--resource-selector=datashare.io/shard in (a, b),!legacy"' \
  '- "--zap-stacktrace-level=error"' \
  'image: "registry.example.com/platform/datashare-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"' \
  "imagePullPolicy: Always" "--sidecar-image=registry.example.com/platform/datashare-sidecar:0.1.0-rc1" \
  "--gateway-image=registry.example.com/platform/datashare-gateway:0.1.0-rc1" "--sidecar-cpu-request=100m" \
  "--sidecar-memory-request=48Mi" "--sidecar-memory-limit=256Mi" "--sidecar-io-threads=2" \
  "--sidecar-busy-poll-micros=100" "serviceAccountName: datashare-operator-custom" \
  "example.com/role: datashare" "port: 9090" "team: platform" "kubernetes.io/os: linux" "- name: registry-credentials" \
  "name: GOMAXPROCS" "grafana_folder: Datashare" $'resourceNames: ["kafka-client"]\n    verbs: [get]' \
  $'kind: Role\nmetadata:\n  name: ds-custom-kafka-secret\n  namespace: kafka'; do
  contains "custom value: ${needle%%$'\n'*}" "$custom" "$needle"
done
no_le=$(render -f "$tests/values-minimal.yaml" --set operator.leaderElection.enabled=false 2>&1)
lacks "leader election off: no Lease role" "$no_le" "leases"
lacks "leader election off: no flag" "$no_le" "--leader-elect"

# 6. ServiceMonitor and PrometheusRule: enabled but not served -> absent; enabled and served ->
#    present, and strictly valid for the prometheus-operator; the rule carries files/alerts.yaml.
lacks "ServiceMonitor enabled, API not served" "$custom" "kind: ServiceMonitor"
lacks "PrometheusRule enabled, API not served" "$custom" "kind: PrometheusRule"
lacks "PodMonitors enabled, API not served" "$custom" "kind: PodMonitor"
all_apis=(--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PodMonitor
  --api-versions monitoring.coreos.com/v1/PrometheusRule)
served=$(render -f "$work/custom.yaml" "${all_apis[@]}" 2>&1) || fatal "render with monitoring APIs failed: $served"
printf '%s\n' "$served" >"$work/served.yaml"
check "prometheus-operator objects decode strictly; the rule is files/alerts.yaml" "$validate" monitoring "$work/served.yaml" \
  --expect ServiceMonitor=1 --expect PodMonitor=2 --expect PrometheusRule=1 \
  --rules-equal "$chart/files/alerts.yaml" --rules-out "$work/rules.yaml"
contains "PodMonitors look in the watched namespace" "$served" $'namespaceSelector:\n    matchNames:\n    - team-a'
contains "sidecar PodMonitor scrapes ds-admin" "$served" "- port: ds-admin"
contains "gateway PodMonitor selects gateways" "$served" "app.kubernetes.io/name: datashare-gateway"
all_ns=$(render -f "$tests/values-minimal.yaml" --set metrics.podMonitors.enabled=true "${all_apis[@]}" 2>&1)
contains "PodMonitors look everywhere when all namespaces are watched" "$all_ns" $'namespaceSelector:\n    any: true'
printf '%s\n' "$all_ns" >"$work/all-ns.yaml"
check "PodMonitors alone" "$validate" monitoring "$work/all-ns.yaml" --expect PodMonitor=2 --expect ServiceMonitor=0
check "rendered rules pass promtool" promtool check rules "$work/rules.yaml"
contains "ServiceMonitor job label" "$served" "jobLabel: datashare.io/metrics-job"
contains "ServiceMonitor keeps the policies' namespace label" "$served" "honorLabels: true"
contains "ServiceMonitor selector labels" "$served" "release: kube-prometheus-stack"
only_sm=$(render -f "$work/custom.yaml" --api-versions monitoring.coreos.com/v1/ServiceMonitor 2>&1)
printf '%s\n' "$only_sm" >"$work/only-sm.yaml"
check "only the served kind is rendered" "$validate" monitoring "$work/only-sm.yaml" --expect ServiceMonitor=1 \
  --expect PodMonitor=0 --expect PrometheusRule=0
disabled=$(render -f "$tests/values-minimal.yaml" "${all_apis[@]}" 2>&1)
printf '%s\n' "$disabled" >"$work/disabled.yaml"
check "served but disabled: none" "$validate" monitoring "$work/disabled.yaml" --expect ServiceMonitor=0 \
  --expect PodMonitor=0 --expect PrometheusRule=0
# The validator itself refuses what the prometheus-operator would (else the checks above prove nothing).
sed 's/^  jobLabel:/  jobLabell:/' "$work/served.yaml" >"$work/broken.yaml"
refuse "validator refuses an unknown ServiceMonitor field" 'unknown field "jobLabell"' "$validate" monitoring "$work/broken.yaml"

# 7. The chart README's values table: every value, and no value that does not exist.
check "chart README documents every value" "$validate" values-doc "$chart/values.yaml" "$chart/README.md"
sed 's/^| `operator.logFormat` |/| `operator.logFormatt` |/' "$chart/README.md" >"$work/README.md"
refuse "a stale README row is found" "names operator.logFormatt, which values.yaml does not have" \
  "$validate" values-doc "$chart/values.yaml" "$work/README.md"

# 8. The images the chart names: docker/Dockerfile has a non-root runtime stage on Debian slim for
#    each, with the binary where the chart's command expects it. (No container runtime here: the
#    images themselves are not built; see docker/README.md.)
dockerfile="$root/docker/Dockerfile"
contains "runtime base is Debian 12 slim" "$(cat "$dockerfile")" $'ARG DEBIAN_RELEASE=bookworm'
contains "runtime base is slim" "$(cat "$dockerfile")" 'FROM debian:${DEBIAN_RELEASE}-slim AS runtime-base'
for target in operator sidecar gateway; do
  stage=$(awk -v t="$target" '/^FROM /{on = ($NF == t)} on' "$dockerfile")
  contains "image $target: stage" "$stage" "FROM runtime-base AS $target"
  contains "image $target: non-root" "$stage" "USER 65532:65532"
  contains "image $target: binary" "$stage" "ENTRYPOINT [\"/usr/local/bin/datashare-$target\"]"
done

# 9. The packaged chart (what a registry serves) renders the same files: crds/, alerts, dashboard.
if out=$("$helm" package "$chart" -d "$work/package" 2>&1); then
  pass
  tgz=$(ls "$work"/package/datashare-*.tgz)
  listing=$(tar -tzf "$tgz")
  for f in datashare/crds/datashare.io_dataproducts.yaml datashare/crds/datashare.io_datasharingpolicies.yaml \
    datashare/files/alerts.yaml datashare/files/dashboards/datashare.json datashare/values.schema.json datashare/README.md; do
    contains "package holds $f" "$listing" "$f"
  done
  packaged=$("$helm" template rel "$tgz" --namespace datashare-system --kube-version "$kube_version" \
    -f "$tests/values-minimal.yaml" 2>&1)
  [[ "$packaged" == "$default" ]] && pass || fail "the packaged chart renders differently from the source"
else
  fail "helm package: $out"
fi

finish
