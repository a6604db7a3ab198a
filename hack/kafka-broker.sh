#!/usr/bin/env bash
# A private single-node Kafka broker for tests that must stop and restart it (broker outages)
# without disturbing the shared one of hack/local-cluster.sh.
#
#   hack/kafka-broker.sh up DIR [--sasl-ssl]
#                                    format and start a new broker with state in DIR; prints DIR/env.
#                                    --sasl-ssl: its client listener is SASL_SSL only (SCRAM-SHA-512
#                                    and a client certificate required; certificates from a test CA
#                                    made with openssl, cached in ~/.cache/datashare/kafka-tls-v2;
#                                    users created at format time)
#   hack/kafka-broker.sh stop DIR    stop the broker (kill -TERM, then -KILL), keeping its data
#   hack/kafka-broker.sh kill DIR    kill -9 the broker, keeping its data
#   hack/kafka-broker.sh start DIR   start it again on the same port with the same data
#   hack/kafka-broker.sh freeze DIR  SIGSTOP the broker: connections stay open, nothing answers
#   hack/kafka-broker.sh thaw DIR    SIGCONT it
#   hack/kafka-broker.sh down DIR    stop it and remove DIR
#
# DIR/env holds `export DATASHARE_KAFKA_BOOTSTRAP=127.0.0.1:<port>`; for --sasl-ssl also
# DATASHARE_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD (random, per
# broker), _CA_FILE, _CLIENT_CERT_FILE, _CLIENT_KEY_FILE and _KCAT_CONFIG (a kcat -F file). DIR/env is mode 600. `up` on a running
# broker prints its env again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/process.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/kafka.sh"

action=${1:-}; S=${2:-}; security=plaintext
[[ -n "$action" && -n "$S" ]] || { echo "usage: $0 up|stop|kill|start|freeze|thaw|down DIR [--sasl-ssl]" >&2; exit 2; }
case "${3:-}" in
  "") ;;
  --sasl-ssl) security=sasl_ssl ;;
  *) echo "usage: $0 up DIR [--sasl-ssl]" >&2; exit 2 ;;
esac
[[ -f "$KAFKA_HOME/.complete" ]] || die "kafka not installed: run hack/install-deps.sh first"

case "$action" in
  up)
    mkdir -p "$S/logs" "$S/pids"
    if alive kafka; then cat "$S/env"; exit 0; fi
    : > "$S/ports.taken"
    port=$(free_port); cport=$(free_port)
    kcat_conf=""
    [[ "$security" == sasl_ssl ]] && kcat_conf="$S/kafka/kcat.conf"
    printf 'KAFKA_PORT=%s\nKAFKA_KCAT_CONFIG=%s\n' "$port" "$kcat_conf" > "$S/ports"
    kafka_configure "$S/kafka" "$port" "$cport" "$security"
    [[ "$security" == sasl_ssl ]] && kafka_client_config "$S/kafka" "$port"
    kafka_start "$S/kafka" "$port" "$kcat_conf"
    (umask 077
     echo "export DATASHARE_KAFKA_BOOTSTRAP=127.0.0.1:$port" > "$S/env"
     if [[ "$security" == sasl_ssl ]]; then cat "$S/kafka/client.env" >> "$S/env"; fi)
    cat "$S/env"
    ;;
  stop) stop kafka ;;
  kill) stop kafka KILL ;;
  start)
    # shellcheck disable=SC1091
    source "$S/ports"
    alive kafka || kafka_start "$S/kafka" "$KAFKA_PORT" "${KAFKA_KCAT_CONFIG:-}"
    ;;
  freeze) alive kafka && kill -STOP "$(pid_of kafka)" ;;
  thaw) alive kafka && kill -CONT "$(pid_of kafka)" ;;
  down) if alive kafka; then kill -CONT "$(pid_of kafka)"; fi; stop kafka; rm -rf "$S" ;;
  *) echo "usage: $0 up|stop|kill|start|freeze|thaw|down DIR" >&2; exit 2 ;;
esac
