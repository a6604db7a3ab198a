#!/usr/bin/env bash
# The operator under faults, on a PRIVATE control plane and broker (hack/local-cluster.sh with its
# own state directory: etcd, kube-apiserver, kube-controller-manager, Kafka), so the API server can
# really be restarted and etcd compacted without touching the shared cluster:
#   1. kill -9 mid-reconcile, DATASHARE_CHAOS_OPERATOR_KILLS times, each right after a batch of changes;
#   2. an API server restart while the operator runs, changes made right after;
#   3. a watch expiry: the operator cut off (a TCP proxy refuses its connections), changes made,
#      etcd compacted and the API server restarted, so its watches resume from a version that is
#      gone (410) and it must re-list;
# then the cluster state must converge to the resources' spec: every policy Ready for its current
# generation with the sidecar injected, deleted policies' sidecars removed, the product Ready with
# its topic at the spec's partitions. Prints one `CHAOS operator-faults ...` line.
# Usage: operator_chaos_test.sh <datashare-operator> <datashare-test-proxy>
set -euo pipefail
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
source "$DATASHARE_SOURCE_DIR/hack/lib/common.sh"
operator=${1:?usage: operator_chaos_test.sh DATASHARE_OPERATOR DATASHARE_TEST_PROXY}
test_proxy=${2:?usage: operator_chaos_test.sh DATASHARE_OPERATOR DATASHARE_TEST_PROXY}
policies=${DATASHARE_CHAOS_OPERATOR_POLICIES:-10}
kills=${DATASHARE_CHAOS_OPERATOR_KILLS:-3}
kubectl=$(kubectl_bin) || { echo "kubectl not found: run hack/install-deps.sh" >&2; exit 1; }
began=$(date +%s)

work=$(mktemp -d /tmp/datashare-opchaos.XXXXXX)
cluster="$work/cluster"
S="$work"  # free_port remembers the ports it handed out here
source "$DATASHARE_SOURCE_DIR/hack/lib/process.sh"
lc() { DATASHARE_STATE_DIR="$cluster" "$DATASHARE_SOURCE_DIR/hack/local-cluster.sh" "$@"; }
op_pid="" proxy_pid=""
cleanup() {
  [[ -n "$op_pid" ]] && kill -9 "$op_pid" 2>/dev/null || true
  [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null || true
  if [[ -n "${keep_logs:-}" ]]; then
    echo "--- operator log (sanitizer reports, tail)" >&2
    grep -a -A40 -E "AddressSanitizer|runtime error|LeakSanitizer" "$work/operator.log" | head -80 >&2 || true
    tail -30 "$work/operator.log" >&2 || true
  fi
  lc down >/dev/null 2>&1 || true
  if [[ -n "${DATASHARE_KEEP_TEST_DIRS:-}" ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# If this script is killed (a ctest timeout), no trap runs: a watchdog stops the private cluster.
setsid nohup bash -c "while kill -0 $$ 2>/dev/null; do sleep 2; done; DATASHARE_STATE_DIR='$cluster' \
  '$DATASHARE_SOURCE_DIR/hack/local-cluster.sh' down; [[ -n '${DATASHARE_KEEP_TEST_DIRS:-}' ]] || rm -rf '$work'" \
  >/dev/null 2>&1 &

lc up > "$work/cluster-up.log" 2>&1 || { cat "$work/cluster-up.log" >&2; echo "private cluster did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$cluster/env"  # KUBECONFIG, DATASHARE_KAFKA_BOOTSTRAP of the private cluster
source "$cluster/ports"
source "$DATASHARE_SOURCE_DIR/hack/lib/testing.sh"  # until_true, k

# The broker is fresh: no group coordinator yet (no __consumer_offsets). The operator's first lag
# polls get NOT_COORDINATOR answers, which crashed librdkafka 2.0.2 on a handle without a consumer
# group (confluentinc/librdkafka#5040); this test is the regression test for the workaround in
# controllers/kafka/rdkafka_admin.cc, so it must not warm the coordinator up first.

# The operator reaches the API server through a proxy, so it can be cut off on its own.
coproc PROXY { exec "$test_proxy" "127.0.0.1:$API_PORT"; }
proxy_pid=$PROXY_PID
read -r proxy_port <&"${PROXY[0]}"
k config view --raw --flatten > "$work/via-proxy.kubeconfig"
KUBECONFIG="$work/via-proxy.kubeconfig" "$kubectl" config set-cluster \
  "$(k config view --minify -o jsonpath='{.clusters[0].name}')" --server="https://127.0.0.1:$proxy_port" >/dev/null
health_port=$(free_port) metrics_port=$(free_port)
start_operator() {
  KUBECONFIG="$work/via-proxy.kubeconfig" "$operator" --kafka-bootstrap "$DATASHARE_KAFKA_BOOTSTRAP" \
    --metrics-bind-address "127.0.0.1:$metrics_port" --health-probe-bind-address "127.0.0.1:$health_port" \
    --topic-resync-interval 2s --lag-poll-interval 1s \
    --sidecar-image registry.test/datashare-sidecar:1 >> "$work/operator.log" 2>&1 &
  op_pid=$!
  echo "$(date -u +%T.%N) operator pid $op_pid started" >> "$work/operator.log"
}
crashes=0
# kill -9; an operator found already dead crashed by itself, which counts as a loss.
kill_operator() {
  if kill -0 "$op_pid" 2>/dev/null; then kill -9 "$op_pid"; else crashes=$((crashes + 1)); fi
  local rc=0
  wait "$op_pid" 2>/dev/null || rc=$?
  echo "$(date -u +%T.%N) operator pid $op_pid ended with status $rc" >> "$work/operator.log"
  op_pid=""
}

P=catalog C=orders T="opchaos-$$.products"
k apply -f "$DATASHARE_SOURCE_DIR/crds/" >/dev/null
k create namespace "$P" >/dev/null
k create namespace "$C" >/dev/null
k -n "$P" create deployment product-service --image=registry.test/product:1 >/dev/null
for ((i = 0; i < policies; i++)); do k -n "$C" create deployment "svc-$i" --image=registry.test/svc:1 >/dev/null; done

partitions=3
declare -A fields deleted
apply_product() {
  k apply -f - >/dev/null <<YAML
apiVersion: datashare.io/v1alpha1
kind: DataProduct
metadata: {name: products, namespace: $P}
spec:
  owner:
    workload: {name: product-service}
    endpoint: {service: product-service, port: 8080, readPath: "/products/{key}", writePath: "/products/{key}"}
  key: id
  fields:
    - {name: id, type: string}
    - {name: name, type: string}
    - {name: price, type: number}
  topic: {name: $T, partitions: $partitions, replicationFactor: 1}
  access: {namespaces: [$C]}
YAML
}
apply_policies() { # fields: every live policy to these fields, in one kubectl call
  local f=$1 i
  for ((i = 0; i < policies; i++)); do [[ -n "${deleted[$i]:-}" ]] || fields[$i]=$f; done
  for ((i = 0; i < policies; i++)); do  # a pipeline's subshell: it only reads
    [[ -n "${deleted[$i]:-}" ]] && continue
    printf -- '---\napiVersion: datashare.io/v1alpha1\nkind: DataSharingPolicy\nmetadata: {name: p-%s, namespace: %s}\nspec:\n  product: {name: products, namespace: %s}\n  consumer: {workload: {name: svc-%s}}\n  mode: event\n  fields: %s\n' \
      "$i" "$C" "$P" "$i" "$f"
  done | k apply -f - >/dev/null
}
field_sets=("[id, name]" "[id, name, price]")

start_operator
apply_product
apply_policies "${field_sets[0]}"
changes=$((1 + policies))

# 1. kill -9 right after each batch of changes, at a random point of the reconciles it started.
for ((r = 1; r <= kills; r++)); do
  partitions=$((partitions + 1))
  apply_product
  apply_policies "${field_sets[$((r % 2))]}"
  changes=$((changes + 1 + policies))
  sleep "$((RANDOM % 15 / 10)).$((RANDOM % 10))"
  kill_operator
  start_operator
done

# 2. The API server restarted under the running operator; a policy deleted and fields changed after.
lc restart-apiserver > "$work/restart1.log" 2>&1 || { cat "$work/restart1.log" >&2; exit 1; }
apiserver_restarts=1
k -n "$C" delete dsp p-0 --wait=false >/dev/null
deleted[0]=1
apply_policies "${field_sets[0]}"
changes=$((changes + policies))

# 3. Watch expiry: cut off, changes, etcd compacted, API server restarted, reconnected.
sleep 3  # the operator's watches are established again after the restart
kill -USR1 "$proxy_pid"
partitions=$((partitions + 1))
apply_product
apply_policies "${field_sets[1]}"
changes=$((changes + 1 + policies))
revision=$(curl -sf -X POST "http://127.0.0.1:$ETCD_PORT/v3/kv/range" -d '{"key":"AA=="}' | jq -r '.header.revision')
curl -sf -X POST "http://127.0.0.1:$ETCD_PORT/v3/kv/compaction" -d "{\"revision\":\"$revision\",\"physical\":true}" >/dev/null
lc restart-apiserver > "$work/restart2.log" 2>&1 || { cat "$work/restart2.log" >&2; exit 1; }
apiserver_restarts=2
kill -USR2 "$proxy_pid"

# Convergence: count what is not (yet) as the spec says.
not_converged=0
check_state() {
  local dsp deploys dp n=0 i name
  dsp=$(k -n "$C" get dsp -o json) deploys=$(k -n "$C" get deploy -o json) dp=$(k -n "$P" get dp products -o json)
  for ((i = 0; i < policies; i++)); do
    name="p-$i"
    local sidecar
    sidecar=$(jq -r --arg d "svc-$i" '.items[] | select(.metadata.name == $d) | [.spec.template.spec.initContainers[]?.name] | index("datashare-sidecar") != null' <<<"$deploys")
    if [[ -n "${deleted[$i]:-}" ]]; then
      [[ "$(jq --arg n "$name" '[.items[] | select(.metadata.name == $n)] | length' <<<"$dsp")" == 0 && "$sidecar" == false ]] || n=$((n + 1))
    else
      [[ "$(jq -r --arg n "$name" --arg f "${fields[$i]}" '.items[] | select(.metadata.name == $n) |
          ((.status.conditions // [] | map(select(.type == "Ready"))[0].status) == "True"
           and .status.observedGeneration == .metadata.generation
           and (.spec.fields | join(", ")) == ($f | ltrimstr("[") | rtrimstr("]")))' <<<"$dsp")" == true && "$sidecar" == true ]] || n=$((n + 1))
    fi
  done
  [[ "$(jq -r '(.status.conditions // [] | map(select(.type == "Ready"))[0].status) == "True"
      and .status.observedGeneration == .metadata.generation' <<<"$dp")" == true ]] || n=$((n + 1))
  [[ "$(kcat -b "$DATASHARE_KAFKA_BOOTSTRAP" -L -t "$T" -m 5 2>/dev/null | grep -c 'partition ')" == "$partitions" ]] || n=$((n + 1))
  not_converged=$n
  (( n == 0 ))
}
converge_start=$(date +%s)
ok=true
until_true 180 check_state || { check_state || true; ok=false; }
converge_seconds=$(( $(date +%s) - converge_start ))
# A watcher cut off while it was watching learns of the expiry at its next attempt, which its
# reconnect backoff (up to 30 s) may put after the convergence above: wait for it.
expired() { (( $(grep -c "expired, re-listing" "$work/operator.log" || true) > 0 )); }
until_true 60 expired || true
expiries=$(grep -c "expired, re-listing" "$work/operator.log" || true)
alive=true
kill -0 "$op_pid" 2>/dev/null || { alive=false; crashes=$((crashes + 1)); }
lost=$((not_converged + crashes))
(( expiries > 0 )) || { echo "FAIL: no watch expired (410): the expiry fault was not injected" >&2; lost=$((lost + 1)); }
(( crashes == 0 )) || echo "FAIL: the operator crashed $crashes time(s) by itself" >&2
[[ "$ok" == true && "$alive" == true ]] || keep_logs=1
(( lost == 0 )) || keep_logs=1
echo "CHAOS operator-faults policies=$policies changes=$changes kills=$kills apiserver_restarts=$apiserver_restarts" \
  "watch_expiries=$expiries converge_seconds=$converge_seconds not_converged=$not_converged crashes=$crashes lost=$lost" \
  "seconds=$(( $(date +%s) - began ))"
(( lost == 0 ))
