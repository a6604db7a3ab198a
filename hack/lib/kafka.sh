# shellcheck shell=bash
# A single-node Kafka broker in KRaft mode (broker and controller in one process), on 127.0.0.1.
# Sourced, never run; needs common.sh and process.sh, and S set to the state directory.

# kafka_configure DIR PORT CONTROLLER_PORT: writes DIR/server.properties and log4j.properties
# and formats DIR/data as a new cluster.
kafka_configure() {
  local dir=$1 port=$2 cport=$3
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<K
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
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
    -c "$dir/server.properties" >> "$S/logs/kafka.log" 2>&1 || die "kafka storage format failed (log: $S/logs/kafka.log)"
}

kafka_java() {
  echo "java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j.configuration=file:$1/log4j.properties -cp $KAFKA_HOME/libs/*"
}

# kafka_start DIR PORT: starts the broker configured in DIR (process name "kafka") and waits.
kafka_start() {
  local dir=$1 port=$2 java
  read -ra java <<<"$(kafka_java "$dir")"
  start kafka "${java[@]}" kafka.Kafka "$dir/server.properties"
  wait_for kafka 90 kafka_ready "$port"
}

kafka_ready() { kcat -b "127.0.0.1:$1" -L -m 2 >/dev/null 2>&1; }
