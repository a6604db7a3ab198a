#!/usr/bin/env bash
# The chart's RBAC and flags against the real operator (ctest chart_operator_rbac_test, label
# integration). Usage: operator_rbac_test.sh DATASHARE_OPERATOR
#
# The chart is installed on the local cluster; the operator binary then runs as a local process
# (no kubelet here) with the flags the installed Deployment carries and, as its credentials, a
# token of the chart's ServiceAccount: it can do only what the chart's ClusterRole and Roles
# allow. It must then do its whole job without one "forbidden": elect itself leader on the
# Lease, read the Kafka Secret, create a topic, inject sidecars into an owner and a consumer,
# deploy a gateway coordinator with its claim, record events, write status, remove the gateway
# and the finalizers again. Its /metrics must export what the alerts and the dashboard use, and
# the dashboard's queries, run by a real Prometheus scraping it, must answer as Grafana needs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest, which starts the local cluster}"
: "${DATASHARE_KAFKA_BOOTSTRAP:?DATASHARE_KAFKA_BOOTSTRAP is not set: run through ctest}"
operator=${1:?usage: operator_rbac_test.sh DATASHARE_OPERATOR}
[[ -x "$operator" ]] || fatal "no operator binary at $operator"
kubectl=$(kubectl_bin) || fatal "kubectl not found: run hack/install-deps.sh"
S=$(mktemp -d)  # state of hack/lib/process.sh: pids, logs, ports handed out
source "$root/hack/lib/process.sh"

suffix="rbac-$$-$RANDOM"
ns="ds-$suffix" cat="cat-$suffix" ord="ord-$suffix" bill="bill-$suffix"
release="datashare-$suffix" topic="$suffix.products"
log="$S/logs/operator.log"
cleanup() {
  stop prometheus
  stop operator
  for n in "$cat" "$ord" "$bill"; do
    for r in $(k -n "$n" get dsp,dp -o name 2>/dev/null); do
      k -n "$n" patch "$r" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
  done
  "$helm" uninstall "$release" -n "$ns" --wait=false >/dev/null 2>&1 || true
  k delete namespace "$ns" "$cat" "$ord" "$bill" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if (( failed > 0 )) && [[ -f "$log" ]]; then echo "--- operator log (tail)" >&2; tail -40 "$log" >&2; fi
  rm -rf "$S"
}
trap cleanup EXIT

# 1. The chart, with a Kafka Secret the operator must read through its Role.
k apply --server-side --force-conflicts -f "$chart/crds/" >/dev/null 2>&1 || fatal "CRDs not applied"
for n in "$ns" "$cat" "$ord" "$bill"; do k create namespace "$n" >/dev/null || fatal "namespace $n"; done
k -n "$ns" create secret generic kafka-client --from-literal=protocol=PLAINTEXT >/dev/null || fatal "secret"
out=$("$helm" install "$release" "$chart" -n "$ns" --set kafka.bootstrap="$DATASHARE_KAFKA_BOOTSTRAP" \
  --set kafka.securitySecret.name=kafka-client --set operator.lagPollInterval=1s \
  --set-string operator.resourceSelector="datashare.io/test-run=$suffix" 2>&1) || fatal "helm install: $out"

# 2. The operator's credentials: a token of the chart's ServiceAccount, nothing else.
token=$(k -n "$ns" create token "$release" --duration=1h 2>&1) || fatal "no token for the ServiceAccount: $token"
server=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
if [[ -z "$ca" ]]; then
  ca_file=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  ca=$(base64 -w0 <"$ca_file")
fi
cat >"$S/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: local, user: operator}}]
current-context: operator
EOF
check "the token is the ServiceAccount's" bash -c \
  "'$kubectl' --kubeconfig '$S/kubeconfig' auth whoami -o jsonpath='{.status.userInfo.username}' | grep -qx 'system:serviceaccount:$ns:$release'"

# 2b. Secrets: the operator may read the one Kafka Secret it is pointed at, and no other — not
#     another in the same namespace, not one elsewhere, not a list (a list would reveal them all).
k -n "$ns" create secret generic other-secret --from-literal=password=not-for-the-operator >/dev/null || fatal "secret"
k -n "$cat" create secret generic app-secret --from-literal=password=not-for-the-operator >/dev/null || fatal "secret"
sa="system:serviceaccount:$ns:$release"
can_i() {  # expected(yes|no) verb resource [namespace flags...]
  local want=$1; shift
  local got
  got=$(k auth can-i --as="$sa" "$@" 2>/dev/null)
  if [[ "$got" == "$want" ]]; then pass; else fail "can-i $* as the operator: \"$got\", expected $want"; fi
}
can_i yes get secret/kafka-client -n "$ns"
can_i no get secret/other-secret -n "$ns"
can_i no get secret/app-secret -n "$cat"
can_i no list secrets -n "$ns"
can_i no watch secrets -n "$ns"
can_i no list secrets --all-namespaces
can_i no update secret/kafka-client -n "$ns"
can_i no create secrets -n "$ns"
# The same with the operator's real token against the API server: 200 for its Secret, 403 for
# every other read.
printf '%s' "$ca" | base64 -d >"$S/ca.crt"
status_as_operator() {  # path -> HTTP status of a GET with the ServiceAccount's token
  curl -s -o /dev/null -w '%{http_code}' --cacert "$S/ca.crt" -H "Authorization: Bearer $token" "$server$1"
}
expect_status() {  # description expected path
  local got; got=$(status_as_operator "$3")
  if [[ "$got" == "$2" ]]; then pass; else fail "$1: HTTP $got, expected $2"; fi
}
expect_status "its own Kafka Secret" 200 "/api/v1/namespaces/$ns/secrets/kafka-client"
expect_status "another Secret of its namespace" 403 "/api/v1/namespaces/$ns/secrets/other-secret"
expect_status "a Secret of an application namespace" 403 "/api/v1/namespaces/$cat/secrets/app-secret"
expect_status "the list of its namespace's Secrets" 403 "/api/v1/namespaces/$ns/secrets"
expect_status "the list of every Secret" 403 "/api/v1/secrets"
# And the operator itself, pointed at a Secret its Role does not name, stops with the refusal.
out=$(timeout 60 "$operator" --kubeconfig "$S/kubeconfig" --kafka-bootstrap "$DATASHARE_KAFKA_BOOTSTRAP" \
  --kafka-security-secret "$ns/other-secret" --leader-elect=false \
  --metrics-bind-address=0 --health-probe-bind-address=0 2>&1)
code=$?
if (( code != 0 )) && [[ "$out" == *403* && "$out" == *other-secret* ]]; then pass
else fail "operator pointed at a Secret it may not read: exit $code, output: ${out:0:600}"; fi

# 3. The operator with the installed Deployment's own arguments (bind addresses moved to free
#    local ports: this machine runs several tests at once).
mapfile -t args < <(k -n "$ns" get deployment "$release" -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}')
(( ${#args[@]} >= 15 )) || fatal "Deployment args: ${args[*]}"
metrics_port=$(free_port) health_port=$(free_port)
run_args=(--kubeconfig "$S/kubeconfig")
for a in "${args[@]}"; do
  case "$a" in
    --metrics-bind-address=*) run_args+=("--metrics-bind-address=127.0.0.1:$metrics_port") ;;
    --health-probe-bind-address=*) run_args+=("--health-probe-bind-address=127.0.0.1:$health_port") ;;
    *) run_args+=("$a") ;;
  esac
done
start operator "$operator" "${run_args[@]}"
wait_for operator 60 curl -sf "http://127.0.0.1:$health_port/readyz"
pass
eventually "leader on the chart's Lease, in the release namespace" 30 bash -c \
  "'$kubectl' -n '$ns' get lease datashare-operator -o jsonpath='{.spec.holderIdentity}' | grep -q ."

# 4. An owner, an event consumer and a sync consumer (which needs a gateway coordinator).
{ deployment_yaml product-service "$cat" 8080; echo ---; deployment_yaml order-service "$ord"; echo ---
  deployment_yaml billing-service "$bill"; } | k apply -f - >/dev/null || fatal "workloads not created"
k apply -f - >/dev/null <<EOF || fatal "DataProduct and policies not created"
apiVersion: datashare.io/v1alpha1
kind: DataProduct
metadata: {name: products, namespace: $cat, labels: {datashare.io/test-run: $suffix}}
spec:
  owner:
    workload: {kind: Deployment, name: product-service}
    endpoint: {service: product-service, port: 8080, readPath: "/products/{key}", writePath: "/products/{key}"}
  key: id
  fields:
    - {name: id, type: string}
    - {name: name, type: string}
    - {name: price, type: number}
  topic: {name: $topic, partitions: 1, replicationFactor: 1, deletionPolicy: Delete}
  access: {namespaces: [$ord, $bill]}
---
apiVersion: datashare.io/v1alpha1
kind: DataSharingPolicy
metadata: {name: order-products, namespace: $ord, labels: {datashare.io/test-run: $suffix}}
spec:
  product: {name: products, namespace: $cat}
  consumer: {workload: {name: order-service}}
  mode: event
  fields: [id, name]
  consistency: {maxLag: 5s}
---
apiVersion: datashare.io/v1alpha1
kind: DataSharingPolicy
metadata: {name: billing-products, namespace: $bill, labels: {datashare.io/test-run: $suffix}}
spec:
  product: {name: products, namespace: $cat}
  consumer: {workload: {name: billing-service}}
  mode: sync
  fields: [id, price]
EOF
sidecar_in() { k -n "$1" get deployment "$2" -o jsonpath='{.spec.template.spec.initContainers[*].name} {.spec.template.spec.containers[*].name}' | grep -q datashare-sidecar; }
eventually "topic created (TopicReady)" 60 bash -c "[[ \"\$('$kubectl' -n $cat get dp products -o jsonpath='{.status.conditions[?(@.type==\"TopicReady\")].status}')\" == True ]]"
eventually "publisher sidecar injected into the owner (Deployment patch)" 60 sidecar_in "$cat" product-service
eventually "replica sidecar injected into the event consumer" 60 sidecar_in "$ord" order-service
eventually "sidecar config ConfigMap created" 60 bash -c "'$kubectl' -n $ord get configmap -l app.kubernetes.io/managed-by=datashare-operator -o name | grep -q ."
eventually "gateway coordinator Deployment created" 60 k -n "$cat" get deployment datashare-gateway-products
eventually "gateway decision-log claim created" 60 k -n "$cat" get pvc datashare-gateway-products-log
eventually "gateway Service created" 60 k -n "$cat" get service datashare-gateway-products
eventually "policy status written (SidecarInjected)" 60 bash -c "[[ \"\$('$kubectl' -n $ord get dsp order-products -o jsonpath='{.status.conditions[?(@.type==\"SidecarInjected\")].status}')\" == True ]]"
eventually "finalizer set on the policy" 30 bash -c "'$kubectl' -n $ord get dsp order-products -o jsonpath='{.metadata.finalizers}' | grep -q datashare"
eventually "events recorded (events.k8s.io)" 60 bash -c "'$kubectl' -n $cat get events.events.k8s.io --field-selector reportingController=datashare.io/operator -o name 2>/dev/null | grep -q ."

# 5. Its metrics: valid exposition, and the series the alerts and the dashboard use.
metrics=$(curl -sf "http://127.0.0.1:$metrics_port/metrics")
check "promtool check metrics" bash -c 'promtool check metrics <<<"$1" 2>&1 | grep -v "counter metrics should have \"_total\" suffix" | { ! grep -q "error"; }' _ "$metrics"
for series in controller_runtime_reconcile_total controller_runtime_reconcile_errors_total \
  controller_runtime_reconcile_time_seconds_bucket workqueue_depth leader_election_master_status \
  datashare_policy_max_lag_seconds datashare_sharing_edge; do
  contains "operator exports $series" "$metrics" "$series"
done
contains "the sharing graph's edge for the event policy" "$metrics" "consumer=\"$ord/order-service\""
edge=$(grep "^datashare_sharing_edge{" <<<"$metrics" | grep "consumer=\"$ord/order-service\"" | head -1)
for label in "owner=\"$cat/product-service\"" 'mode="event"'; do contains "edge label $label" "$edge" "$label"; done

# 6. The dashboard's own queries, taken from the dashboard JSON, against a real Prometheus (Debian)
#    scraping this operator as job "datashare-operator": the sharing graph's nodes and edges
#    come out with the fields Grafana's node graph reads, the budget in seconds, reconcile rates.
command -v prometheus >/dev/null || fatal "prometheus not found: run hack/install-deps.sh"
validate=$(build_validator)
dashboard="$chart/files/dashboards/datashare.json"
prom_port=$(free_port)
cat >"$S/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: datashare-operator
    honor_labels: true
    # As the chart's ServiceMonitor scrapes it: a target label "namespace" (the operator's own),
    # which the policies' namespace label must win over.
    static_configs: [{targets: ["127.0.0.1:$metrics_port"], labels: {namespace: "$ns"}}]
EOF
start prometheus prometheus --config.file="$S/prometheus.yml" --storage.tsdb.path="$S/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port"
wait_for prometheus 30 curl -sf "http://127.0.0.1:$prom_port/-/ready"
target_expr() { "$validate" dashboard "$dashboard" --print-target "$1"; }
query() { curl -sf -G --data-urlencode "query=$1" "http://127.0.0.1:$prom_port/api/v1/query"; }
answers() {  # description expression needle...: eventually, the query's result has every needle
  local what=$1 expr=$2; shift 2
  local deadline=$(( $(date +%s) + 30 )) out needle missing
  while :; do
    out=$(query "$expr" 2>&1) missing=""
    for needle in "$@"; do [[ "$out" == *"$needle"* ]] || missing="$needle"; done
    [[ -z "$missing" ]] && { pass; return; }
    (( $(date +%s) < deadline )) || { fail "$what: \"$missing\" not in $out"; return; }
    sleep 1
  done
}
graph="Sharing graph: owner -> consumer, by mode"
edges=$(target_expr "$graph/edges") || fatal "no edges query: $edges"
nodes=$(target_expr "$graph/nodes") || fatal "no nodes query: $nodes"
answers "node graph edge, event mode" "$edges" "\"source\":\"$cat/product-service\"" \
  "\"target\":\"$ord/order-service\"" '"mainstat":"event"' "\"id\":\"$cat/product-service -\\u003e $ord/order-service"
answers "node graph edge, sync mode" "$edges" "\"target\":\"$bill/billing-service\"" '"mainstat":"sync"'
answers "node graph nodes" "$nodes" "\"id\":\"$cat/product-service\"" "\"title\":\"$cat/product-service\"" \
  "\"id\":\"$ord/order-service\"" "\"id\":\"$bill/billing-service\""
answers "lag budget in seconds" "$(target_expr "Lag per policy (seconds) against its budget/B")" \
  "\"namespace\":\"$ord\",\"policy\":\"order-products\"" ',"5"]'
answers "reconcile rate per controller and result" "$(target_expr "Reconciles per second/A")" '"controller":' '"result":"success"'
answers "policies counted" "$(target_expr "Policies/A")" '"result":[{"metric":{},"value":'
stop prometheus

# 7. Taking it all away: gateway and claim deleted, finalizers removed, the topic deleted.
k -n "$bill" delete dsp billing-products --wait=false >/dev/null
eventually "sync policy gone (finalizer removed)" 60 bash -c "! '$kubectl' -n $bill get dsp billing-products"
eventually "gateway Deployment deleted when no copy needs it" 60 bash -c "! '$kubectl' -n $cat get deployment datashare-gateway-products"
eventually "gateway claim deleted" 60 bash -c "! '$kubectl' -n $cat get pvc datashare-gateway-products-log"
k -n "$ord" delete dsp order-products --wait=false >/dev/null
k -n "$cat" delete dp products --wait=false >/dev/null
eventually "event policy gone" 60 bash -c "! '$kubectl' -n $ord get dsp order-products"
eventually "product gone (topic deleted, finalizer removed)" 60 bash -c "! '$kubectl' -n $cat get dp products"

# 8. Not one request refused for want of a permission.
alive operator && pass || fail "the operator exited"
# RBAC refusals only ("... is forbidden: User ... cannot patch ..."): the operator watches every
# namespace, and another test's namespace being deleted answers 403 too ("unable to create new
# content in namespace X because it is being terminated"), which no permission would change.
denied=$(grep -iE 'forbidden: User|cannot (get|list|watch|create|update|patch|delete)' "$log" | head -5)
[[ -z "$denied" ]] && pass || fail "the operator was refused something its chart RBAC should allow: $denied"

finish
