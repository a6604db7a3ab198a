#!/usr/bin/env bash
# A private single-node Kafka broker for tests that must stop and restart it (broker outages)
# without disturbing the shared one of hack/local-cluster.sh.
#
#   hack/kafka-broker.sh up DIR      format and start a new broker with state in DIR; prints DIR/env
#   hack/kafka-broker.sh stop DIR    stop the broker (kill -TERM, then -KILL), keeping its data
#   hack/kafka-broker.sh kill DIR    kill -9 the broker, keeping its data
#   hack/kafka-broker.sh start DIR   start it again on the same port with the same data
#   hack/kafka-broker.sh freeze DIR  SIGSTOP the broker: connections stay open, nothing answers
#   hack/kafka-broker.sh thaw DIR    SIGCONT it
#   hack/kafka-broker.sh down DIR    stop it and remove DIR
#
# DIR/env holds `export DATASHARE_KAFKA_BOOTSTRAP=127.0.0.1:<port>`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/process.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/kafka.sh"

action=${1:-}; S=${2:-}
[[ -n "$action" && -n "$S" ]] || { echo "usage: $0 up|stop|kill|start|freeze|thaw|down DIR" >&2; exit 2; }
[[ -f "$KAFKA_HOME/.complete" ]] || die "kafka not installed: run hack/install-deps.sh first"

case "$action" in
  up)
    mkdir -p "$S/logs" "$S/pids"
    if alive kafka; then cat "$S/env"; exit 0; fi
    : > "$S/ports.taken"
    port=$(free_port); cport=$(free_port)
    echo "KAFKA_PORT=$port" > "$S/ports"
    kafka_configure "$S/kafka" "$port" "$cport"
    kafka_start "$S/kafka" "$port"
    echo "export DATASHARE_KAFKA_BOOTSTRAP=127.0.0.1:$port" > "$S/env"
    cat "$S/env"
    ;;
  stop) stop kafka ;;
  kill) stop kafka KILL ;;
  start)
    # shellcheck disable=SC1091
    source "$S/ports"
    alive kafka || kafka_start "$S/kafka" "$KAFKA_PORT"
    ;;
  freeze) alive kafka && kill -STOP "$(pid_of kafka)" ;;
  thaw) alive kafka && kill -CONT "$(pid_of kafka)" ;;
  down) if alive kafka; then kill -CONT "$(pid_of kafka)"; fi; stop kafka; rm -rf "$S" ;;
  *) echo "usage: $0 up|stop|kill|start|freeze|thaw|down DIR" >&2; exit 2 ;;
esac
