#!/usr/bin/env bash
# The operator against the real API server, kube-controller-manager and Kafka, driven through
# kubectl like a user: topics created and kept to their spec (config drift, partitions, refused
# decrease), sidecars injected and removed, cross-namespace access, bad specs reported by
# condition, missing workloads picked up later, gateway objects collected by owner references,
# kill -9 and restart, the API server unreachable for 12 s (connections cut through a proxy),
# deletion policies. Usage: operator_test.sh <datashare-operator> <datashare-test-proxy>
set -euo pipefail
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest (make test), which starts the local cluster}"
: "${DATASHARE_KAFKA_BOOTSTRAP:?DATASHARE_KAFKA_BOOTSTRAP is not set}"
source "$DATASHARE_SOURCE_DIR/hack/lib/common.sh"
S=$(mktemp -d)  # free_port remembers the ports it handed out here
source "$DATASHARE_SOURCE_DIR/hack/lib/process.sh"
kubectl=$(kubectl_bin) || { echo "kubectl not found: run hack/install-deps.sh" >&2; exit 1; }
operator=${1:?usage: operator_test.sh DATASHARE_OPERATOR DATASHARE_TEST_PROXY}
test_proxy=${2:?usage: operator_test.sh DATASHARE_OPERATOR DATASHARE_TEST_PROXY}

base="dsop-$$-$RANDOM"
P="$base-cat" C="$base-ord" X="$base-x"
T="$base.products"
work=$(mktemp -d)
source "$DATASHARE_SOURCE_DIR/hack/lib/testing.sh"  # check, until_true, k, finish
op_pid=""
metrics_port=$(free_port)
health_port=$(free_port)
start_operator() {
  "$operator" --kafka-bootstrap "$DATASHARE_KAFKA_BOOTSTRAP" --metrics-bind-address "127.0.0.1:$metrics_port" \
    --health-probe-bind-address "127.0.0.1:$health_port" --topic-resync-interval 2s --lag-poll-interval 1s \
    --sidecar-image registry.test/datashare-sidecar:1 --resource-selector "datashare.io/test-run=$base" \
    >> "$work/operator.log" 2>&1 &
  op_pid=$!
  until_true 30 curl -sf "http://127.0.0.1:$health_port/readyz" || { echo "operator not ready" >&2; tail -20 "$work/operator.log" >&2; exit 1; }
}
proxy_pid=""
cleanup() {
  [[ -n "$op_pid" ]] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null || true
  [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null || true
  for ns in "$P" "$C" "$X"; do k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; done
  # Finalizers of objects left behind would hold the namespaces: drop them.
  for ns in "$P" "$C" "$X"; do
    for r in $(k -n "$ns" get dsp,dp -o name 2>/dev/null); do
      k -n "$ns" patch "$r" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
  done
  if (( failed > 0 )); then echo "--- operator log (tail)" >&2; tail -40 "$work/operator.log" >&2; fi
  rm -rf "$work" "$S"
}
trap cleanup EXIT

kafka_config() { # topic → "k=v" lines of the topic's overrides
  java -Xmx256m -cp "$KAFKA_HOME/libs/*" kafka.admin.ConfigCommand --bootstrap-server "$DATASHARE_KAFKA_BOOTSTRAP" \
    --entity-type topics --entity-name "$1" --describe 2>/dev/null | tr ' ' '\n' | grep -E '^[a-z.]+=' | grep -v '^sensitive=' || true
}
kafka_alter() { # topic config
  java -Xmx256m -cp "$KAFKA_HOME/libs/*" kafka.admin.ConfigCommand --bootstrap-server "$DATASHARE_KAFKA_BOOTSTRAP" \
    --entity-type topics --entity-name "$1" --alter --add-config "$2" >/dev/null 2>&1
}
partitions() { kcat -b "$DATASHARE_KAFKA_BOOTSTRAP" -L -t "$1" -m 5 2>/dev/null | sed -n 's/.* with \([0-9]*\) partitions.*/\1/p' | head -1; }
topic_exists() { [[ -n "$(partitions "$1")" ]]; }
condition() { # kind ns name type → "status reason"
  k -n "$2" get "$1" "$3" -o jsonpath="{.status.conditions[?(@.type==\"$4\")].status} {.status.conditions[?(@.type==\"$4\")].reason}" 2>/dev/null
}
has_condition() { [[ "$(condition "$@" | cut -d' ' -f1-2)" == "$5 $6" ]]; }
sidecar_of() { k -n "$1" get deployment "$2" -o jsonpath='{.spec.template.spec.initContainers[*].name}' 2>/dev/null; }
has_sidecar() { [[ "$(sidecar_of "$1" "$2")" == *datashare-sidecar* ]]; }
no_sidecar() { k -n "$1" get deployment "$2" >/dev/null && [[ "$(sidecar_of "$1" "$2")" != *datashare-sidecar* ]]; }
metric() { curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }

k apply -f "$DATASHARE_SOURCE_DIR/crds/" >/dev/null
for ns in "$P" "$C" "$X"; do k create namespace "$ns" >/dev/null; done
k -n "$P" create deployment product-service --image=registry.test/product:1 >/dev/null
k -n "$C" create deployment order-service --image=registry.test/order:1 >/dev/null
k -n "$X" create deployment intruder --image=registry.test/x:1 >/dev/null
start_operator

product() { # name topic deletionPolicy partitions
  cat <<YAML
apiVersion: datashare.io/v1alpha1
kind: DataProduct
metadata: {name: $1, namespace: $P, labels: {datashare.io/test-run: $base}}
spec:
  owner:
    workload: {name: product-service}
    endpoint: {service: product-service, port: 8080, readPath: "/products/{key}", writePath: "/products/{key}"}
  key: id
  fields:
    - {name: id, type: string}
    - {name: name, type: string}
    - {name: price, type: number}
    - {name: supplierEmail, type: string, restricted: true}
  topic: {name: $2, partitions: $4, replicationFactor: 1, config: {min.insync.replicas: "1"}, deletionPolicy: $3}
  access: {namespaces: [$C]}
YAML
}
policy() { # ns name workload mode fields syncFields
  cat <<YAML
apiVersion: datashare.io/v1alpha1
kind: DataSharingPolicy
metadata: {name: $2, namespace: $1, labels: {datashare.io/test-run: $base}}
spec:
  product: {name: products, namespace: $P}
  consumer: {workload: {name: $3}}
  mode: $4
  fields: $5
  syncFields: $6
YAML
}

# --- DataProduct: topic ---------------------------------------------------------------------
product products "$T" Delete 3 | k apply -f - >/dev/null
check "DataProduct becomes Ready" until_true 60 has_condition dp "$P" products Ready True Ready
check "topic created with 3 partitions" until_true 30 bash -c "[[ \$(kcat -b $DATASHARE_KAFKA_BOOTSTRAP -L -t $T -m 5 2>/dev/null | grep -c 'partition ') == 3 ]]"
cfg=$(kafka_config "$T")
check "topic is compacted and carries the spec's config" bash -c "grep -qx 'cleanup.policy=compact' <<<'$cfg' && grep -qx 'min.insync.replicas=1' <<<'$cfg'"
check "dead-letter topic created" until_true 30 topic_exists "$T.dlq"
check "status reports the observed topic" until_true 30 bash -c "[[ \$('$kubectl' -n $P get dp products -o jsonpath='{.status.topic.partitions}') == 3 ]]"

kafka_alter "$T" "cleanup.policy=delete,retention.ms=1000"
check "config drift is reverted" until_true 60 bash -c "c=\$(java -Xmx256m -cp '$KAFKA_HOME/libs/*' kafka.admin.ConfigCommand --bootstrap-server $DATASHARE_KAFKA_BOOTSTRAP --entity-type topics --entity-name $T --describe 2>/dev/null); grep -q 'cleanup.policy=compact' <<<\"\$c\" && ! grep -q 'retention.ms=' <<<\"\$c\""
check "drift is reported as an event" until_true 30 bash -c "'$kubectl' -n $P get events.events.k8s.io -o jsonpath='{.items[*].reason}' | grep -q ConfigDriftReverted"

k -n "$P" patch dp products --type=merge -p '{"spec":{"topic":{"partitions":5}}}' >/dev/null
check "partitions are increased" until_true 60 bash -c "[[ \$(kcat -b $DATASHARE_KAFKA_BOOTSTRAP -L -t $T -m 5 2>/dev/null | grep -c 'partition ') == 5 ]]"
k -n "$P" patch dp products --type=merge -p '{"spec":{"topic":{"partitions":2}}}' >/dev/null
check "a partition decrease is refused with a reason" until_true 60 has_condition dp "$P" products Ready False PartitionDecreaseNotSupported
k -n "$P" patch dp products --type=merge -p '{"spec":{"topic":{"partitions":5}}}' >/dev/null
check "back to Ready once the spec is reachable" until_true 60 has_condition dp "$P" products Ready True Ready
check "the owner gets the publisher sidecar" until_true 30 has_sidecar "$P" product-service

product newer "$T" Retain 5 | k apply -f - >/dev/null
check "a second product claiming the topic gets TopicConflict" until_true 60 has_condition dp "$P" newer Ready False TopicConflict
k -n "$P" delete dp newer --wait=true --timeout=60s >/dev/null
check "deleting the conflicting product leaves the topic alone" topic_exists "$T"

# --- DataSharingPolicy: sidecar -------------------------------------------------------------
policy "$C" orders order-service event "[id, name]" "[]" | k apply -f - >/dev/null
check "policy becomes Ready" until_true 60 has_condition dsp "$C" orders Ready True Ready
check "the consumer gets the sidecar as a native sidecar" until_true 30 bash -c "[[ \$('$kubectl' -n $C get deploy order-service -o jsonpath='{.spec.template.spec.initContainers[0].restartPolicy}') == Always ]]"
cm() { k -n "$C" get configmap datashare-sidecar-order-service -o jsonpath='{.data.sidecar\.yaml}'; }
check "the ConfigMap holds the policy's sidecar config" bash -c "c=\$('$kubectl' -n $C get configmap datashare-sidecar-order-service -o jsonpath='{.data.sidecar\.yaml}'); grep -q 'policy: orders' <<<\"\$c\" && grep -q 'mode: event' <<<\"\$c\" && grep -q 'topic: $T' <<<\"\$c\""
hash1=$(k -n "$C" get deploy order-service -o jsonpath='{.spec.template.metadata.annotations.datashare\.io/config-hash}')
check "the pod template carries the config hash of the status" bash -c "[[ -n '$hash1' && \$('$kubectl' -n $C get dsp orders -o jsonpath='{.status.sidecar.configHash}') == '$hash1' ]]"
configured() { k -n "$C" get events.events.k8s.io -o jsonpath='{range .items[*]}{.reason} {.regarding.kind}/{.regarding.name}{"\n"}{end}' | grep '^SidecarConfigured ' || true; }
injection_told() { configured | grep -qx 'SidecarConfigured Deployment/order-service'; }
check "the first injection is told as an event on the Deployment" until_true 30 injection_told
lacks "... and not once more per policy" "$(configured)" DataSharingPolicy
check "the lag is measured into the status" until_true 30 bash -c "[[ -n \$('$kubectl' -n $C get dsp orders -o jsonpath='{.status.lag.observedAt}') ]]"
check "lag metrics are exported" until_true 30 bash -c "curl -sf http://127.0.0.1:$metrics_port/metrics | grep -q 'datashare_policy_lag_events{namespace=\"$C\",policy=\"orders\"'"
for i in 1 2 3; do echo "k$i:{\"id\":\"k$i\",\"name\":\"n$i\"}"; done | kcat -P -b "$DATASHARE_KAFKA_BOOTSTRAP" -t "$T" -K: 2>/dev/null
check "events nobody applied show in the status lag" until_true 30 bash -c "[[ \$('$kubectl' -n $C get dsp orders -o jsonpath='{.status.lag.events}') -ge 3 ]]"
# The policy's consumer group reads everything and commits (as its replica would).
timeout 20 kcat -b "$DATASHARE_KAFKA_BOOTSTRAP" -G "datashare.$C.orders" -o beginning -e -q \
  -X enable.auto.commit=true -X auto.commit.interval.ms=100 "$T" >/dev/null 2>&1 || true
check "... and go once the group has committed them: lag 0, ReplicaCaughtUp" until_true 30 bash -c "[[ \$('$kubectl' -n $C get dsp orders -o jsonpath='{.status.lag.events}|{.status.conditions[?(@.type==\"ReplicaCaughtUp\")].status}') == '0|True' ]]"

policy "$C" orders order-service hybrid "[id, name]" "[price]" | k apply -f - >/dev/null
check "changing the mode updates the config" until_true 30 bash -c "'$kubectl' -n $C get configmap datashare-sidecar-order-service -o jsonpath='{.data.sidecar\.yaml}' | grep -q 'mode: hybrid'"
check "... and the hash, so pods roll" until_true 30 bash -c "h=\$('$kubectl' -n $C get deploy order-service -o jsonpath='{.spec.template.metadata.annotations.datashare\.io/config-hash}'); [[ -n \$h && \$h != '$hash1' ]]"

policy "$X" intruder intruder event "[id]" "[]" | k apply -f - >/dev/null
check "cross-namespace sharing is denied without access" until_true 60 has_condition dsp "$X" intruder AccessGranted False NamespaceNotAllowed
check "... and nothing is injected there" no_sidecar "$X" intruder

policy "$C" leaky order-service event "[id, supplierEmail]" "[]" | k apply -f - >/dev/null
check "a restricted field in a local copy is refused by condition" until_true 60 has_condition dsp "$C" leaky ProductResolved False RestrictedField
policy "$C" typo order-service event "[id, nmae]" "[]" | k apply -f - >/dev/null
check "an unknown field is refused by condition" until_true 60 has_condition dsp "$C" typo ProductResolved False UnknownField
check "the bad policies do not change the sidecar config" bash -c "! '$kubectl' -n $C get configmap datashare-sidecar-order-service -o jsonpath='{.data.sidecar\.yaml}' | grep -q 'policy: leaky'"

# This run's operator serves the products and policies labelled for it (--resource-selector):
# one labelled for another operator is not its to touch, though it comes first.
policy "$C" foreign order-service event "[id]" "[]" | sed "s/test-run: $base/test-run: other-$base/" | k apply -f - >/dev/null
policy "$C" late late-service event "[id]" "[]" | k apply -f - >/dev/null
check "a missing workload is a condition" until_true 60 has_condition dsp "$C" late SidecarInjected False WorkloadNotFound
check "a policy outside --resource-selector is left alone (no finalizer, no status)" \
  bash -c "[[ -z \$('$kubectl' -n $C get dsp foreign -o jsonpath='{.metadata.finalizers}{.status}') ]]"
k -n "$C" create deployment late-service --image=registry.test/late:1 >/dev/null
check "... and the sidecar arrives with the workload" until_true 60 has_sidecar "$C" late-service

# --- Gateway ----------------------------------------------------------------------------------
policy "$C" billing order-service sync "[id, name]" "[]" | k apply -f - >/dev/null
check "a sync policy with a copy gets a gateway coordinator" until_true 60 bash -c "'$kubectl' -n $P get deploy datashare-gateway-products && '$kubectl' -n $P get svc datashare-gateway-products && '$kubectl' -n $P get configmap datashare-gateway-products -o jsonpath='{.data.gateway\.yaml}' | grep -q 'role: copy'"
check "the owner and the copy listen for transactions" until_true 30 bash -c "'$kubectl' -n $P get svc datashare-tx-product-service && '$kubectl' -n $C get svc datashare-tx-order-service"
echo 'lag-probe:{"id":"lag-probe","name":"x"}' | kcat -P -b "$DATASHARE_KAFKA_BOOTSTRAP" -t "$T" -K: 2>/dev/null
check "a gateway copy (no replica reads the topic) has no Kafka lag to miss: Ready with events on the topic" \
  until_true 60 bash -c "[[ \$('$kubectl' -n $C get dsp billing -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}|{.status.conditions[?(@.type==\"WithinLagBudget\")].status}|{.status.lag}') == 'True||' ]]"
k -n "$C" delete dsp billing --wait=true --timeout=60s >/dev/null
check "the gateway goes when no copy needs it" until_true 60 bash -c "! '$kubectl' -n $P get deploy datashare-gateway-products"

# --- Deleting a policy removes the sidecar ----------------------------------------------------
k -n "$C" delete dsp orders leaky typo --wait=true --timeout=60s >/dev/null
check "deleting the last policy removes the sidecar" until_true 60 no_sidecar "$C" order-service
check "... and its ConfigMap" until_true 60 bash -c "! '$kubectl' -n $C get configmap datashare-sidecar-order-service"

# --- Bad input does not hot-loop --------------------------------------------------------------
errors_before=$(metric 'controller_runtime_reconcile_errors_total')
sleep 5
errors_after=$(metric 'controller_runtime_reconcile_errors_total')
check "no reconcile errors keep coming from bad resources ($errors_before → $errors_after in 5 s)" \
  bash -c "(( $errors_after - $errors_before <= 2 ))"

# --- Crash and restart ------------------------------------------------------------------------
kill -9 "$op_pid"; wait "$op_pid" 2>/dev/null || true; op_pid=""
k -n "$P" patch dp products --type=merge -p '{"spec":{"topic":{"partitions":6}}}' >/dev/null
policy "$C" orders order-service event "[id, name]" "[]" | k apply -f - >/dev/null
start_operator
check "after kill -9 and restart, changes made meanwhile converge (partitions)" until_true 60 bash -c "[[ \$(kcat -b $DATASHARE_KAFKA_BOOTSTRAP -L -t $T -m 5 2>/dev/null | grep -c 'partition ') == 6 ]]"
check "... (sidecar)" until_true 60 has_sidecar "$C" order-service

# --- The API server unreachable ---------------------------------------------------------------
# The operator reaches the API server through a TCP proxy; cutting it drops every connection
# (watches included) and refuses new ones, as a restarting API server does, while the changes
# below are made directly. When it comes back the operator must resume and converge.
coproc PROXY { exec "$test_proxy" "$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}' | sed 's|^https://||')"; }
proxy_pid=$PROXY_PID
read -r proxy_port <&"${PROXY[0]}"
k config view --raw --flatten > "$work/via-proxy.kubeconfig"
KUBECONFIG="$work/via-proxy.kubeconfig" "$kubectl" config set-cluster \
  "$(k config view --minify -o jsonpath='{.clusters[0].name}')" --server="https://127.0.0.1:$proxy_port" >/dev/null
kill "$op_pid"; wait "$op_pid" 2>/dev/null || true; op_pid=""
KUBECONFIG="$work/via-proxy.kubeconfig" start_operator
check "the operator talks to the API server through the proxy" grep -q "127.0.0.1:$proxy_port" "$work/operator.log"
kill -USR1 "$proxy_pid"
k -n "$P" patch dp products --type=merge -p '{"spec":{"topic":{"partitions":7}}}' >/dev/null
policy "$C" outage outage-service event "[id, name]" "[]" | k apply -f - >/dev/null
k -n "$C" create deployment outage-service --image=registry.test/outage:1 >/dev/null
sleep 12  # longer than a watch's first reconnect backoff, so the operator sees the outage
check "the operator outlives 12 s without the API server" kill -0 "$op_pid"
kill -USR2 "$proxy_pid"
check "after the outage, changes made meanwhile converge (partitions)" until_true 90 bash -c "[[ \$(kcat -b $DATASHARE_KAFKA_BOOTSTRAP -L -t $T -m 5 2>/dev/null | grep -c 'partition ') == 7 ]]"
check "... (a new policy's sidecar)" until_true 90 has_sidecar "$C" outage-service
check "... and the operator is ready again" until_true 30 curl -sf "http://127.0.0.1:$health_port/readyz"
k -n "$C" delete dsp outage --wait=true --timeout=60s >/dev/null
kill "$op_pid"; wait "$op_pid" 2>/dev/null || true; op_pid=""
start_operator

# --- Gateway objects are garbage-collected with their product; deletion policies -------------
policy "$C" billing order-service sync "[id, name]" "[]" | k apply -f - >/dev/null
check "gateway back for the GC check" until_true 60 bash -c "'$kubectl' -n $P get deploy datashare-gateway-products"
kill -9 "$op_pid"; wait "$op_pid" 2>/dev/null || true; op_pid=""
# With the operator down, drop the finalizer by hand: only kube-controller-manager's garbage
# collector can then remove the gateway, through its owner reference.
k -n "$P" delete dp products --wait=false >/dev/null
k -n "$P" patch dp products --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
check "owner references let the garbage collector remove the gateway" until_true 90 bash -c "! '$kubectl' -n $P get deploy datashare-gateway-products && ! '$kubectl' -n $P get configmap datashare-gateway-products"
start_operator
product products "$T" Delete 7 | k apply -f - >/dev/null
check "product recreated over its existing topic" until_true 60 has_condition dp "$P" products Ready True Ready
k -n "$P" delete dp products --wait=true --timeout=60s >/dev/null
check "deletionPolicy Delete removes the topic" until_true 60 bash -c "! kcat -b $DATASHARE_KAFKA_BOOTSTRAP -L -t $T -m 5 2>/dev/null | grep -q 'partition '"
R="$base.retained"
product products "$R" Retain 1 | k apply -f - >/dev/null
check "a Retain product's topic is created" until_true 60 topic_exists "$R"
k -n "$P" delete dp products --wait=true --timeout=60s >/dev/null
check "deletionPolicy Retain keeps the topic" topic_exists "$R"
check "the operator never crashed" kill -0 "$op_pid"

finish
