#!/usr/bin/env bash
# A real local control plane and Kafka broker, on 127.0.0.1 only, for development and tests.
#
#   hack/local-cluster.sh up       start etcd, kube-apiserver, kube-controller-manager, Kafka (KRaft)
#   hack/local-cluster.sh down     stop exactly the processes `up` started, remove the state
#   hack/local-cluster.sh status   say what runs, exit 0 only when everything is healthy
#   hack/local-cluster.sh env      print the env file (source it: KUBECONFIG, DATASHARE_KAFKA_BOOTSTRAP)
#   hack/local-cluster.sh restart-apiserver   stop and start kube-apiserver only (for tests)
#   hack/local-cluster.sh restart-controller-manager   the same for kube-controller-manager
#
# State (certificates, data, logs, pids, kubeconfig, env) is kept in $DATASHARE_STATE_DIR
# (default ~/.cache/datashare/cluster). Ports are picked free at `up` time. A second `up`
# while everything is healthy does nothing. There is no kubelet and no scheduler: pods never run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/process.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/kafka.sh"

S="$DATASHARE_STATE_DIR"
PKI="$S/pki"
ENV_FILE="$S/env"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kafka)

gen_pki() {
  [[ -f "$PKI/.complete" ]] && return
  mkdir -p "$PKI"
  local o="-loglevel error"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=datashare-local-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  sign() { # name subject [san]
    local name=$1 subj=$2 san=${3:-}
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
    local ext="$PKI/$name.ext"
    { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"
      if [[ -n "$san" ]]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$san"
      else echo "extendedKeyUsage=clientAuth"; fi; } > "$ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
      -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  }
  sign apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  sign admin "/O=system:masters/CN=datashare-admin"
  sign controller-manager "/CN=system:kube-controller-manager"
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  : "$o"
  touch "$PKI/.complete"
}

b64() { base64 -w0 < "$1"; }

write_kubeconfig() { # file user-cert-name api-port inline(0|1)
  local file=$1 user=$2 port=$3 inline=$4
  if (( inline )); then
    cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: datashare-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$PKI/$user.crt")
    client-key-data: $(b64 "$PKI/$user.key")
contexts:
- name: datashare-local
  context: {cluster: datashare-local, user: $user, namespace: default}
current-context: datashare-local
KC
  else
    cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: datashare-local
  cluster: {server: "https://127.0.0.1:$port", certificate-authority: "$PKI/ca.crt"}
users:
- name: $user
  user: {client-certificate: "$PKI/$user.crt", client-key: "$PKI/$user.key"}
contexts:
- name: datashare-local
  context: {cluster: datashare-local, user: $user}
current-context: datashare-local
KC
  fi
  chmod 600 "$file"
}

healthy() {
  local c
  [[ -f "$ENV_FILE" ]] || return 1
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  # shellcheck disable=SC1090
  source "$S/ports"
  api_ready && kafka_ready "$KAFKA_PORT"
}

api_ready() {
  # shellcheck disable=SC1090
  source "$S/ports"
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" | grep -q ok
}

start_apiserver() {
  start kube-apiserver "$KUBE_BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --cert-dir="$S/apiserver" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --allow-privileged=true \
    --etcd-compaction-interval="${DATASHARE_ETCD_COMPACTION_INTERVAL:-5m}" \
    --v=1
  wait_for kube-apiserver 90 api_ready
}

start_controller_manager() {
  # Each controller acts as its own service account (system:serviceaccount:kube-system:<name>),
  # which the API server's bootstrap RBAC policy authorizes; as the bare controller-manager user
  # they would be forbidden almost everything (namespaces would never finish terminating).
  start kube-controller-manager "$KUBE_BIN_DIR/kube-controller-manager" \
    --kubeconfig="$S/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$S/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$S/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --leader-elect=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner' \
    --v=1
  wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
}

any_alive() { local c; for c in "${COMPONENTS[@]}"; do alive "$c" && return 0; done; return 1; }

up() {
  if healthy; then log "local cluster already running ($S)"; cat "$ENV_FILE"; return; fi
  if [[ -d "$S" ]] && any_alive; then
    # Running but not healthy yet: starting, or a test is restarting the API server. Other
    # test runs may be using it: wait for it rather than tear it down under them.
    log "local cluster in $S is running but not healthy yet: waiting for it"
    local deadline=$(( $(date +%s) + 120 ))
    while (( $(date +%s) < deadline )); do
      if healthy; then log "local cluster healthy ($S)"; cat "$ENV_FILE"; return; fi
      sleep 1
    done
    die "local cluster in $S runs but stayed unhealthy for 120 s (logs: $S/logs); 'hack/local-cluster.sh down' stops it"
  fi
  if [[ -d "$S" ]]; then log "stale state in $S (no component running): cleaning it first"; down; fi
  # Tells the caller (tests/fixtures/cluster.sh) that this call started the cluster, so it is the one to stop it.
  if [[ -n "${DATASHARE_CLUSTER_STARTED_MARKER:-}" ]]; then touch "$DATASHARE_CLUSTER_STARTED_MARKER"; fi
  [[ -x "$KUBE_BIN_DIR/kube-apiserver" && -f "$KAFKA_HOME/.complete" ]] \
    || die "components not installed: run hack/install-deps.sh first"
  command -v etcd >/dev/null || die "etcd not installed: run hack/install-deps.sh first"
  mkdir -p "$S"/{pids,logs,etcd,apiserver,kafka/data}
  : > "$S/ports.taken"
  gen_pki

  ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port); API_PORT=$(free_port); KCM_PORT=$(free_port)
  KAFKA_PORT=$(free_port); KAFKA_CONTROLLER_PORT=$(free_port)
  cat > "$S/ports" <<P
ETCD_PORT=$ETCD_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
KAFKA_PORT=$KAFKA_PORT
KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
P

  log "etcd on 127.0.0.1:$ETCD_PORT"
  start etcd etcd --name datashare --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "datashare=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" --log-level warn
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

  log "kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT"
  kafka_configure "$S/kafka" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
  read -ra kjava <<<"$(kafka_java "$S/kafka")"
  start kafka "${kjava[@]}" kafka.Kafka "$S/kafka/server.properties"

  log "kube-apiserver $KUBE_VERSION on https://127.0.0.1:$API_PORT"
  start_apiserver
  write_kubeconfig "$S/kubeconfig" admin "$API_PORT" 1
  write_kubeconfig "$S/controller-manager.kubeconfig" controller-manager "$API_PORT" 0

  log "kube-controller-manager (garbage collector, namespaces, service accounts, deployments)"
  start_controller_manager

  wait_for kafka 90 kafka_ready "$KAFKA_PORT"

  cat > "$ENV_FILE" <<E
export KUBECONFIG=$S/kubeconfig
export DATASHARE_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export DATASHARE_ETCD_ENDPOINT=http://127.0.0.1:$ETCD_PORT
export DATASHARE_STATE_DIR=$S
E
  # Wait until the controller manager has created the default ServiceAccount: only then can
  # objects that make pods (Deployments) be admitted in the default namespace.
  local kc; kc=$(kubectl_bin) || die "kubectl not found: run hack/install-deps.sh"
  wait_for kube-controller-manager 60 "$kc" --kubeconfig "$S/kubeconfig" get serviceaccount default -n default
  log "local cluster up: source $ENV_FILE"
  cat "$ENV_FILE"
}

down() {
  local c i
  [[ -d "$S" ]] || { log "local cluster not running"; return; }
  # Reverse order: clients of etcd before etcd.
  for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do c=${COMPONENTS[$i]}; stop "$c"; done
  rm -rf "$S"
  log "local cluster down"
}

status() {
  local c rc=0
  [[ -d "$S" ]] || { echo "local cluster: not running"; return 1; }
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: not running"; rc=1; fi
  done
  if (( rc == 0 )) && healthy; then echo "local cluster: healthy ($ENV_FILE)"; else echo "local cluster: unhealthy"; rc=1; fi
  return $rc
}

restart_controller_manager() {
  [[ -f "$S/ports" ]] || die "local cluster not running"
  # shellcheck disable=SC1090
  source "$S/ports"
  stop kube-controller-manager
  start_controller_manager
}

restart_apiserver() {
  [[ -f "$S/ports" ]] || die "local cluster not running"
  # shellcheck disable=SC1090
  source "$S/ports"
  stop kube-apiserver
  start_apiserver
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) [[ -f "$ENV_FILE" ]] && cat "$ENV_FILE" || die "local cluster not running" ;;
  restart-apiserver) restart_apiserver ;;
  restart-controller-manager) restart_controller_manager ;;
  *) echo "usage: $0 up|down|status|env|restart-apiserver|restart-controller-manager" >&2; exit 2 ;;
esac
