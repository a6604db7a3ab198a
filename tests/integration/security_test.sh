#!/usr/bin/env bash
# Kafka over TLS with SASL/SCRAM, end to end, and secrets kept secret (ctest security_test,
# label integration). Usage: security_test.sh DATASHARE_OPERATOR DATASHARE_SIDECAR
#
# A PRIVATE broker of this test (hack/kafka-broker.sh up DIR --sasl-ssl: a SASL_SSL listener
# only, requiring a client certificate too; certificates from a test CA made with openssl; a
# SCRAM-SHA-512 user created with Kafka's StorageTool at format time, a random password per run). Then, in a namespace of this run,
# watched by an operator of this run (--watch-namespace):
#   1. the broker refuses plaintext, a wrong password and a client without certificate, and kcat
#      with the user's credentials and certificate works (so the rest is really authenticated);
#   2. the operator, given the credentials by a Secret (--kafka-security-secret), creates the
#      topic over SASL_SSL; it renders the sidecars' Kafka security as file paths into the
#      Secret the pod mounts, never the values;
#   3. a publisher sidecar and a replica sidecar, run as local processes with the rendered
#      configs and the Secret's keys as files (as the kubelet mounts them), publish and apply an
#      event over SASL_SSL; kcat reads it from the topic without the restricted field;
#   4. the sidecar's data port answers on 127.0.0.1 only (a connection to this machine's
#      non-loopback address is refused), while its admin port is a separate listener;
#   5. wrong credentials give a clear error naming authentication: in a sidecar's log and
#      exit status, and in a DataProduct's TopicReady condition and its event;
#   6. no secret value (the password, in clear or base64, nor the client key) is in any log,
#      event, status, ConfigMap or Deployment — grepped after the run.
set -uo pipefail
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest (make test), which starts the local cluster}"
operator=${1:?usage: security_test.sh DATASHARE_OPERATOR DATASHARE_SIDECAR}
sidecar=${2:?usage: security_test.sh DATASHARE_OPERATOR DATASHARE_SIDECAR}
root="${DATASHARE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
source "$root/hack/lib/common.sh"
S=$(mktemp -d)  # state of hack/lib/process.sh: pids, logs, ports handed out
source "$root/hack/lib/process.sh"
kubectl=$(kubectl_bin) || { echo "kubectl not found: run hack/install-deps.sh" >&2; exit 1; }
for bin in "$operator" "$sidecar"; do [[ -x "$bin" ]] || { echo "no binary at $bin" >&2; exit 1; }; done

source "$root/hack/lib/testing.sh"  # pass/fail/fatal, check, until_true, eventually, k, condition

suffix="sec-$$-$RANDOM"
ns="$suffix" bad_ns="$suffix-bad" topic="$suffix.products"
broker="$S/broker"
cleanup() {
  local code=$?
  for p in sidecar-bad replica publisher operator-bad operator; do stop "$p"; done
  for n in "$ns" "$bad_ns"; do
    for r in $(k -n "$n" get dsp,dp -o name 2>/dev/null); do
      k -n "$n" patch "$r" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
  done
  k delete namespace "$ns" "$bad_ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  if (( failed > 0 )); then
    for l in "$S"/logs/*.log; do
      [[ "$l" == */kafka.log ]] && continue
      [[ -f "$l" ]] && { echo "--- $(basename "$l") (tail)" >&2; tail -25 "$l" >&2; }
    done
  fi
  "$root/hack/kafka-broker.sh" down "$broker" >/dev/null 2>&1 || true
  rm -rf "$S"
  echo "$passed passed, $failed failed"
  (( failed == 0 && code == 0 )) || exit 1
}
trap cleanup EXIT

# 0. The private SASL_SSL broker. It runs detached: should this script be killed (a ctest
#    timeout), a watchdog takes it down once the script is gone.
out=$("$root/hack/kafka-broker.sh" up "$broker" --sasl-ssl 2>&1) || fatal "private SASL_SSL broker: $out"
# shellcheck disable=SC1091
source "$broker/env"
setsid nohup bash -c "while kill -0 $$ 2>/dev/null; do sleep 2; done; '$root/hack/kafka-broker.sh' down '$broker'" \
  >/dev/null 2>&1 < /dev/null &
bootstrap=$DATASHARE_KAFKA_BOOTSTRAP password=$DATASHARE_KAFKA_SASL_PASSWORD kcat_conf=$DATASHARE_KAFKA_KCAT_CONFIG
[[ ${#password} -ge 16 ]] || fatal "the broker's env has no SASL password"
wrong_password="wrong-$(openssl rand -hex 12)"

# 1. The broker itself: kcat with the SCRAM user and its certificate over TLS sees it;
#    plaintext and a wrong password are refused.
check "kcat as the SCRAM user over TLS lists the broker" kcat -F "$kcat_conf" -b "$bootstrap" -L -m 15
if out=$(kcat -b "$bootstrap" -L -m 5 2>&1); then fail "a plaintext client was served: $out"; else pass; fi
out=$(kcat -F "$kcat_conf" -X sasl.password="$wrong_password" -b "$bootstrap" -L -m 15 2>&1)
if [[ $? -ne 0 && "$out" == *"uthentication"* ]]; then pass; else fail "kcat with a wrong password: $out"; fi

# Mutual TLS: the broker requires a client certificate from its CA, so the operator and the
# sidecars get it from their Secrets too; without one, the handshake is refused.
grep -v '^ssl\.certificate\.location\|^ssl\.key\.location' "$kcat_conf" >"$S/kcat-nocert.conf"
out=$(kcat -F "$S/kcat-nocert.conf" -b "$bootstrap" -L -m 15 2>&1)
if [[ $? -ne 0 && "$out" == *"bad certificate"* ]]; then pass; else fail "kcat without a client certificate: $out"; fi
cp "$DATASHARE_KAFKA_CLIENT_CERT_FILE" "$S/client.crt" && cp "$DATASHARE_KAFKA_CLIENT_KEY_FILE" "$S/client.key" ||
  fatal "no client certificate from the broker's CA"
key_line=$(sed -n 5p "$S/client.key")  # a line of the key's base64 body: step 6 looks for it
[[ ${#key_line} -ge 60 ]] || fatal "client key line: $key_line"

# 2. The namespace, the Secrets (the operator's; the sidecars' datashare-kafka), the workloads,
#    the product and a policy; an operator of this run watching only this namespace.
k apply --server-side --force-conflicts -f "$root/crds/" >/dev/null 2>&1 || fatal "CRDs not applied"
k create namespace "$ns" >/dev/null || fatal "namespace $ns"
kafka_secret() {  # namespace name password [extra kubectl args...]
  local n=$1 name=$2 pw=$3; shift 3
  k -n "$n" create secret generic "$name" --from-literal=protocol=SASL_SSL \
    --from-file=ca.crt="$DATASHARE_KAFKA_CA_FILE" --from-literal=sasl.mechanism=SCRAM-SHA-512 \
    --from-literal=sasl.username="$DATASHARE_KAFKA_SASL_USERNAME" --from-literal=sasl.password="$pw" "$@" >/dev/null
}
kafka_secret "$ns" kafka-client "$password" --from-file=tls.crt="$S/client.crt" --from-file=tls.key="$S/client.key" ||
  fatal "operator Secret"
kafka_secret "$ns" datashare-kafka "$password" --from-file=tls.crt="$S/client.crt" --from-file=tls.key="$S/client.key" ||
  fatal "sidecar Secret"
apply_shop() {  # namespace topic
  { deployment_yaml product-service "$1"; echo ---; deployment_yaml order-service "$1"; echo ---; cat; } <<EOF | k apply -f - >/dev/null
apiVersion: datashare.io/v1alpha1
kind: DataProduct
metadata: {name: products, namespace: $1}
spec:
  owner:
    workload: {kind: Deployment, name: product-service}
    endpoint: {service: product-service, port: 8080, readPath: "/products/{key}"}
  key: id
  fields:
    - {name: id, type: string}
    - {name: name, type: string}
    - {name: price, type: number}
    - {name: supplierEmail, type: string, restricted: true}
  topic: {name: $2, partitions: 1, replicationFactor: 1, deletionPolicy: Delete}
---
apiVersion: datashare.io/v1alpha1
kind: DataSharingPolicy
metadata: {name: order-products, namespace: $1}
spec:
  product: {name: products}
  consumer: {workload: {name: order-service}}
  mode: event
  fields: [id, name]
  consistency: {maxLag: 5s}
EOF
}
apply_shop "$ns" "$topic" || fatal "workloads, product and policy not created"
start_operator() {  # name namespace secret
  start "$1" "$operator" --kubeconfig "$KUBECONFIG" --kafka-bootstrap "$bootstrap" --kafka-security-secret "$3" \
    --watch-namespace "$2" --leader-elect=false --metrics-bind-address=0 \
    --health-probe-bind-address="127.0.0.1:$(free_port)" --lag-poll-interval=1s --topic-resync-interval=5s
}
start_operator operator "$ns" "$ns/kafka-client"
eventually "the operator created the topic over SASL_SSL (TopicReady)" 90 is_true "$ns" dp products TopicReady
out=$(kcat -F "$kcat_conf" -b "$bootstrap" -L -t "$topic" -m 15 2>&1)
[[ "$out" == *"topic \"$topic\" with 1 partitions"* ]] && pass || fail "kcat over SASL_SSL does not see the topic: $out"
eventually "replica sidecar injected (SidecarInjected)" 90 is_true "$ns" dsp order-products SidecarInjected

# The sidecars' Kafka security, as rendered: the protocol, the user, and paths into the mounted
# Secret datashare-kafka — never a value.
fetch_config() {  # workload section -> $S/rendered/<workload>.yaml, once the section is not empty
  mkdir -p "$S/rendered"
  k -n "$ns" get configmap "datashare-sidecar-$1" -o jsonpath='{.data.sidecar\.yaml}' >"$S/rendered/$1.yaml" &&
    grep -q "^$2:" "$S/rendered/$1.yaml" && ! grep -q "^$2: \[\]" "$S/rendered/$1.yaml"
}
until_true 60 fetch_config product-service publish || fatal "no publisher config rendered for product-service"
until_true 60 fetch_config order-service subscribe || fatal "no replica config rendered for order-service"
for w in product-service order-service; do
  cfg=$(cat "$S/rendered/$w.yaml")
  for needle in "protocol: SASL_SSL" "caFile: /etc/datashare/kafka/ca.crt" "mechanism: SCRAM-SHA-512" \
    "username: $DATASHARE_KAFKA_SASL_USERNAME" "passwordFile: /etc/datashare/kafka/sasl.password" \
    "certFile: /etc/datashare/kafka/tls.crt" "keyFile: /etc/datashare/kafka/tls.key" \
    "bootstrapServers: $bootstrap"; do
    [[ "$cfg" == *"$needle"* ]] && pass || fail "$w's rendered config lacks \"$needle\""
  done
  mounts=$(k -n "$ns" get deployment "$w" -o jsonpath='{range .spec.template.spec.volumes[*]}{.name}={.secret.secretName}{"\n"}{end}{range .spec.template.spec.initContainers[*].volumeMounts[*]}{.name}@{.mountPath}{"\n"}{end}')
  [[ "$mounts" == *"datashare-kafka=datashare-kafka"* && "$mounts" == *"datashare-kafka@/etc/datashare/kafka"* ]] &&
    pass || fail "$w's pod template does not mount the Secret datashare-kafka at /etc/datashare/kafka: $mounts"
done

# 3. The two sidecars as local processes: the rendered configs with this run's ports and data
#    directories, and the Secret's keys written as files, as the kubelet mounts a Secret volume.
mount_secret() {  # namespace secret dir
  mkdir -p "$3" && chmod 700 "$3"
  local key
  for key in ca.crt sasl.password tls.crt tls.key; do
    k -n "$1" get secret "$2" -o jsonpath="{.data.${key//./\\.}}" | base64 -d >"$3/$key" || return 1
  done
}
mount_secret "$ns" datashare-kafka "$S/mount" || fatal "the Secret datashare-kafka could not be read"
localize() {  # workload data-port admin-address admin-port secret-dir -> $S/config/<workload>.yaml
  mkdir -p "$S/config" "$S/data"
  awk -v data="$2" -v admin_addr="$3" -v admin="$4" -v datadir="$S/data/$1" '
    /^listen:/ { inlisten = 1; print; next }
    /^[^ ]/ { inlisten = 0 }
    inlisten && /^  data: / { printf "  data: {address: 127.0.0.1, port: %s}\n", data; next }
    inlisten && /^  admin: / { printf "  admin: {address: %s, port: %s}\n", admin_addr, admin; next }
    /^dataDir:/ { print "dataDir: " datadir; next }
    { gsub("/etc/datashare/kafka/", "'"$5"'/"); print }' "$S/rendered/$1.yaml" >"$S/config/$1.yaml"
}
pub_data=$(free_port) pub_admin=$(free_port) rep_data=$(free_port) rep_admin=$(free_port)
# The publisher keeps the rendered admin address (all interfaces, for probes and scrapes).
rendered_admin=$(awk '/^  admin: / { sub(/.*address: */, ""); sub(/,.*/, ""); print }' "$S/rendered/product-service.yaml")
[[ -n "$rendered_admin" ]] || fatal "no admin listener in the rendered config"
localize product-service "$pub_data" "$rendered_admin" "$pub_admin" "$S/mount"
localize order-service "$rep_data" 127.0.0.1 "$rep_admin" "$S/mount"
start publisher "$sidecar" --config "$S/config/product-service.yaml"
start replica "$sidecar" --config "$S/config/order-service.yaml"
get() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1"; }
answers() { [[ "$(get "$1")" == "${2:-200}" ]]; }
eventually "publisher sidecar healthy" 60 answers "http://127.0.0.1:$pub_data/healthz"
eventually "replica sidecar ready (caught up over SASL_SSL)" 90 answers "http://127.0.0.1:$rep_data/readyz"
code=$(curl -s -o "$S/put.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
  --data '{"name":"Brass lamp","price":12.5,"supplierEmail":"supplier@example.invalid"}' \
  "http://127.0.0.1:$pub_data/v1/data/products/p-1")
[[ "$code" == 202 ]] && pass || fail "PUT through the publisher: HTTP $code $(cat "$S/put.out")"
replica_has() { curl -sf "http://127.0.0.1:$rep_data/v1/data/products/p-1" | grep -q 'Brass lamp'; }
eventually "the replica applied the event it read over SASL_SSL" 60 replica_has
read_topic() { kcat -F "$kcat_conf" -b "$bootstrap" -C -t "$topic" -o beginning -e -q -f '%k %s\n' 2>&1; }
topic_has() { read_topic | grep -q 'p-1 .*Brass lamp'; }
eventually "kcat over SASL_SSL reads the published event" 30 topic_has
events=$(read_topic)
[[ "$events" != *supplierEmail* && "$events" != *supplier@example.invalid* ]] && pass ||
  fail "a restricted field reached Kafka: $events"
[[ "$(curl -s "http://127.0.0.1:$rep_data/v1/data/products/p-1")" != *supplier* ]] && pass ||
  fail "the replica holds a restricted field"

# 4. The data port on loopback only; the admin port is another listener.
host_ip=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
if [[ -z "$host_ip" ]]; then
  fail "this machine has no non-loopback IPv4 address to try the data port on"
else
  [[ "$(get "http://127.0.0.1:$pub_data/healthz")" == 200 ]] && pass || fail "data port on 127.0.0.1"
  out=$(curl -sS --max-time 5 "http://$host_ip:$pub_data/healthz" 2>&1)
  [[ "$out" == *"Connection refused"* || "$out" == *"Failed to connect"* ]] && pass ||
    fail "the data port answered on $host_ip: $out"
  [[ "$(get "http://$host_ip:$pub_admin/healthz")" == 200 ]] && pass ||
    fail "the admin port (rendered address $rendered_admin) does not answer on $host_ip"
  [[ "$(get "http://$host_ip:$pub_admin/v1/data/products/p-1")" == 404 ]] && pass ||
    fail "the admin port serves the data API"
fi

# 5a. Wrong credentials in a sidecar: its log names the authentication failure and it exits
#     non-zero rather than retrying silently.
mkdir -p "$S/bad-mount" && cp "$S/mount/ca.crt" "$S/mount/tls.crt" "$S/mount/tls.key" "$S/bad-mount/"
printf '%s' "$wrong_password" >"$S/bad-mount/sasl.password"
localize order-service "$(free_port)" 127.0.0.1 "$(free_port)" "$S/bad-mount"
mv "$S/config/order-service.yaml" "$S/config/bad.yaml"
sed -i "s|^dataDir: .*|dataDir: $S/data/bad|" "$S/config/bad.yaml"
start sidecar-bad "$sidecar" --config "$S/config/bad.yaml"
bad_pid=$(pid_of sidecar-bad)
bad_exited() { ! kill -0 "$bad_pid" 2>/dev/null; }
if until_true 90 bad_exited; then
  wait "$bad_pid"; code=$?
  [[ "$code" == 3 ]] && pass || fail "a sidecar with a wrong password exited with $code, expected 3"
else
  fail "a sidecar with a wrong password kept running (90 s)"
fi
bad_log=$(cat "$S/logs/sidecar-bad.log")
grep -qi 'authentication' <<<"$bad_log" && pass || fail "the sidecar's log does not name authentication: ${bad_log: -600}"

# 5b. Wrong credentials in the operator's Secret: the product says so in TopicReady and an event.
k create namespace "$bad_ns" >/dev/null || fatal "namespace $bad_ns"
kafka_secret "$bad_ns" kafka-client "$wrong_password" --from-file=tls.crt="$S/client.crt" \
  --from-file=tls.key="$S/client.key" || fatal "wrong-password Secret"
apply_shop "$bad_ns" "$suffix-bad.products" || fatal "second product not created"
start_operator operator-bad "$bad_ns" "$bad_ns/kafka-client"
topic_condition() {  # field
  k -n "$bad_ns" get dp products -o jsonpath="{.status.conditions[?(@.type==\"TopicReady\")].$1}"
}
auth_refused() { [[ "$(topic_condition status)" == False ]] && topic_condition message | grep -qi authentication; }
eventually "TopicReady False with a message naming authentication" 120 auth_refused
echo "  TopicReady with a wrong password: $(topic_condition reason): $(topic_condition message)"
auth_event() {
  k -n "$bad_ns" get events.events.k8s.io -o jsonpath='{range .items[*]}{.type} {.reason} {.note}{"\n"}{end}' |
    grep -i '^Warning .*authentication'
}
eventually "a Warning event naming authentication" 60 auth_event

# 6. No secret value anywhere the operator or the sidecars write: logs, events, status,
#    ConfigMaps, Deployments. The grep is first shown to find the password where it must be.
b64=$(printf '%s' "$password" | base64 -w0)
k -n "$ns" get secret kafka-client -o yaml | grep -qF "$b64" && pass || fail "self-check: the base64 password is not in its own Secret"
for n in "$ns" "$bad_ns"; do
  k -n "$n" get events -o yaml >"$S/dump-$n-events.yaml" 2>&1
  k -n "$n" get events.events.k8s.io -o yaml >"$S/dump-$n-events-v1.yaml" 2>&1
  k -n "$n" get dataproducts,datasharingpolicies,configmaps,deployments,services -o yaml >"$S/dump-$n-objects.yaml" 2>&1
done
grep -q 'kind: ConfigMap' "$S/dump-$ns-objects.yaml" && grep -q 'TopicReady' "$S/dump-$ns-objects.yaml" && pass ||
  fail "self-check: the dump has no ConfigMap or status"
for secret in "$password" "$b64" "$wrong_password" "$key_line"; do
  hits=$(grep -lF -- "$secret" "$S"/logs/operator*.log "$S"/logs/publisher.log "$S"/logs/replica.log \
    "$S"/logs/sidecar-bad.log "$S"/dump-*.yaml 2>/dev/null)
  [[ -z "$hits" ]] && pass || fail "a secret value (${secret:0:4}…) appears in: $hits"
done
