# shellcheck shell=bash
# A single-node Kafka broker in KRaft mode (broker and controller in one process), on 127.0.0.1.
# Sourced, never run; needs common.sh and process.sh, and S set to the state directory.

# kafka_configure DIR PORT CONTROLLER_PORT [sasl_ssl]: writes DIR/server.properties and
# log4j.properties and formats DIR/data as a new cluster. With sasl_ssl the client listener is
# SASL_SSL only (SCRAM-SHA-512 and a client certificate from the CA of kafka_tls_material: mutual
# TLS is required), and the SCRAM users
# are created at format time with the broker's own StorageTool: "admin" (the broker itself) and
# "datashare" (clients), each with a random password written to DIR/users (mode 600).
kafka_configure() {
  local dir=$1 port=$2 cport=$3 security=${4:-plaintext}
  local scram=()
  mkdir -p "$dir/data"
  if [[ "$security" == sasl_ssl ]]; then
    kafka_tls_material "$dir/tls"
    local admin_pw client_pw
    admin_pw=$(openssl rand -hex 16) client_pw=$(openssl rand -hex 16)
    (umask 077; printf 'admin %s\ndatashare %s\n' "$admin_pw" "$client_pw" > "$dir/users")
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$admin_pw]"
           --add-scram "SCRAM-SHA-512=[name=datashare,password=$client_pw]")
    (umask 077; cat > "$dir/server.properties" <<K
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$(cat "$dir/tls/broker.p12.password")
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.crt
listener.name.sasl_ssl.ssl.client.auth=required
K
)
  else
    cat > "$dir/server.properties" <<K
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
K
  fi
  cat >> "$dir/server.properties" <<K
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
K
  cat > "$dir/log4j.properties" <<'L'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
L
  local java; read -ra java <<<"$(kafka_java "$dir")"
  "${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    -c "$dir/server.properties" "${scram[@]}" >> "$S/logs/kafka.log" 2>&1 || die "kafka storage format failed (log: $S/logs/kafka.log)"
}

# kafka_tls_material DIR: DIR/ca.crt (a CA), DIR/broker.p12 (the broker's key and a
# certificate from that CA for 127.0.0.1 and localhost) and DIR/client.crt, DIR/client.key (a
# client certificate from that CA), made with openssl. They are made once and cached in
# $DATASHARE_CACHE/kafka-tls-v2, then copied (private keys mode 600).
kafka_tls_material() {
  local out=$1 cache="$DATASHARE_CACHE/kafka-tls-v2"
  if [[ ! -f "$cache/.complete" ]]; then
    local tmp; tmp=$(mktemp -d "$DATASHARE_CACHE/kafka-tls.XXXXXX")
    (
      set -e
      cd "$tmp"
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=datashare test Kafka CA" \
        -keyout ca.key -out ca.crt
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > broker.ext
      openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile broker.ext \
        -out broker.crt
      openssl req -newkey rsa:2048 -nodes -subj "/CN=datashare-client" -keyout client.key -out client.csr
      printf 'extendedKeyUsage=clientAuth\n' > client.ext
      openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext \
        -out client.crt
      openssl rand -hex 16 > broker.p12.password
      openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt -name broker \
        -passout "file:broker.p12.password" -out broker.p12
      touch .complete
    ) > "$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; rm -rf "$tmp"; die "openssl: the Kafka test certificates were not made"; }
    # Another run may have made them meanwhile: either copy is good, keep the first.
    mv -T "$tmp" "$cache" 2>/dev/null || rm -rf "$tmp"
  fi
  mkdir -p "$out"
  cp "$cache/ca.crt" "$cache/broker.p12" "$cache/broker.p12.password" "$cache/client.crt" "$cache/client.key" "$out/"
  chmod 600 "$out/broker.p12" "$out/broker.p12.password" "$out/client.key"
}

# kafka_client_config DIR PORT: for a sasl_ssl broker, DIR/client.env (what a test needs to
# connect as the "datashare" user) and DIR/kcat.conf (the same for kcat -F), both mode 600.
kafka_client_config() {
  local dir=$1 port=$2 pw
  pw=$(awk '$1 == "datashare" {print $2}' "$dir/users")
  (umask 077
   cat > "$dir/kcat.conf" <<C
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=datashare
sasl.password=$pw
ssl.ca.location=$dir/tls/ca.crt
ssl.certificate.location=$dir/tls/client.crt
ssl.key.location=$dir/tls/client.key
C
   cat > "$dir/client.env" <<C
export DATASHARE_KAFKA_SECURITY_PROTOCOL=SASL_SSL
export DATASHARE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export DATASHARE_KAFKA_SASL_USERNAME=datashare
export DATASHARE_KAFKA_SASL_PASSWORD=$pw
export DATASHARE_KAFKA_CA_FILE=$dir/tls/ca.crt
export DATASHARE_KAFKA_CLIENT_CERT_FILE=$dir/tls/client.crt
export DATASHARE_KAFKA_CLIENT_KEY_FILE=$dir/tls/client.key
export DATASHARE_KAFKA_KCAT_CONFIG=$dir/kcat.conf
C
  )
}

kafka_java() {
  echo "java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j.configuration=file:$1/log4j.properties -cp $KAFKA_HOME/libs/*"
}

# kafka_start DIR PORT [KCAT_CONFIG]: starts the broker configured in DIR (process name "kafka")
# and waits until kcat (with that config file, for a secured listener) sees it.
kafka_start() {
  local dir=$1 port=$2 java
  read -ra java <<<"$(kafka_java "$dir")"
  start kafka "${java[@]}" kafka.Kafka "$dir/server.properties"
  wait_for kafka 90 kafka_ready "$port" "${3:-}"
}

kafka_ready() {
  local conf=()
  [[ -n "${2:-}" ]] && conf=(-F "$2")
  kcat "${conf[@]}" -b "127.0.0.1:$1" -L -m 2 >/dev/null 2>&1
}
