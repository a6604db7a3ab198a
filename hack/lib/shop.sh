# shellcheck shell=bash
# The shop example (examples/*.yaml, examples/shop) run locally: the operator, the example
# applied, then — there is no kubelet — the services, their sidecars and the gateway started as
# local processes from the configuration the operator rendered, and a Prometheus scraping them.
# What `make run` (hack/run.sh) and the e2e test (examples/shop/e2e_test.sh) share. Sourced,
# never run.
#
# Callers source common.sh and process.sh and set:
#   S            state directory (pids/, logs/, config/, data/ inside)
#   BIN          directory holding datashare-operator, -sidecar, -gateway, -shop-products, -shop-orders
#   KC           kubectl
#   SHOP_SUFFIX  "" or e.g. "-e2e123": appended to the namespaces and the topic, so runs do not meet;
#                with one, the products and policies carry datashare.io/test-run=e2e123 and the
#                operator serves only those (--resource-selector)
# with KUBECONFIG and DATASHARE_KAFKA_BOOTSTRAP exported.

SHOP_RUN_LABEL=datashare.io/test-run  # with a SHOP_SUFFIX: the label of this run's products and policies
SHOP_WORKLOADS=(catalog/product-service orders/order-service shipping/shipping-service billing/billing-service)
SHOP_CONSUMERS=(order-service shipping-service billing-service)
declare -A SHOP_PORT=()  # "<workload>.<app|data|admin|participant>", "gateway.<data|admin>", operator.*, prometheus
SHOP_STARTED=()          # names given to `start`, in start order

shop_ns() { echo "$1${SHOP_SUFFIX:-}"; }
shop_url() { echo "http://127.0.0.1:${SHOP_PORT[$1]}"; }

# shop_examples SUFFIX: examples/*.yaml as one stream, namespaces and topic renamed with SUFFIX.
shop_examples() {
  local sfx=${1:-} f
  for f in "$DATASHARE_ROOT"/examples/*.yaml; do echo "---"; cat "$f"; done |
    sed -E -e "s/catalog\.products\.v1/catalog$sfx.products.v1/g" \
      -e "s/(^|[^-a-zA-Z0-9.])(catalog|orders|shipping|billing)([^-a-zA-Z0-9.]|$)/\1\2$sfx\3/g" |
    if [[ -n "$sfx" ]]; then
      # A run with a suffix (a test) labels its products and policies, and its operator serves
      # those only (--resource-selector): other tests' operators on the shared cluster leave it be.
      awk -v label="$SHOP_RUN_LABEL: ${sfx#-}" '
        /^kind: (DataProduct|DataSharingPolicy)$/ { ours = 1 }
        { print }
        ours && /^metadata:$/ { print "  labels: {" label "}"; ours = 0 }'
    else
      cat
    fi
}

shop_start() {  # NAME COMMAND...: `start` that remembers the name for shop_stop_all
  start "$@"
  SHOP_STARTED+=("$1")
}

shop_start_operator() {
  SHOP_PORT[operator.metrics]=$(free_port)
  SHOP_PORT[operator.health]=$(free_port)
  shop_start operator "$BIN/datashare-operator" --kafka-bootstrap "$DATASHARE_KAFKA_BOOTSTRAP" \
    --metrics-bind-address "127.0.0.1:${SHOP_PORT[operator.metrics]}" \
    --health-probe-bind-address "127.0.0.1:${SHOP_PORT[operator.health]}" --lag-poll-interval 1s \
    --graceful-shutdown-timeout 5s ${SHOP_SUFFIX:+--resource-selector $SHOP_RUN_LABEL=${SHOP_SUFFIX#-}}
  wait_for operator 60 curl -sf "$(shop_url operator.health)/readyz"
}

# Applies the example and waits until the product is Ready and each policy has its sidecar.
# (Not the policies' Ready: event and hybrid policies are Ready only once their replica has
# committed offsets, and the sidecars start after this, from the config the operator rendered.)
shop_apply() {
  local ns
  shop_examples "${SHOP_SUFFIX:-}" >"$S/examples.yaml"
  "$KC" apply -f "$S/examples.yaml" >/dev/null
  "$KC" -n "$(shop_ns catalog)" wait --for=condition=Ready dataproduct/products --timeout=120s >/dev/null
  for ns in orders shipping billing; do
    "$KC" -n "$(shop_ns "$ns")" wait --for=condition=SidecarInjected datasharingpolicies --all --timeout=120s >/dev/null
  done
}

# The operator's ConfigMaps into $S/rendered/: <workload>.yaml (key sidecar.yaml of
# datashare-sidecar-<workload>) and gateway.yaml (datashare-gateway-products), once complete (the
# owner's sidecar takes part in the gateway's transactions, billing's keeps the copy).
shop_fetch_configs() {
  local deadline=$(($(date +%s) + 60)) w ok
  mkdir -p "$S/rendered"
  while :; do
    ok=1
    for w in "${SHOP_WORKLOADS[@]}"; do
      "$KC" -n "$(shop_ns "${w%/*}")" get configmap "datashare-sidecar-${w#*/}" -o jsonpath='{.data.sidecar\.yaml}' \
        >"$S/rendered/${w#*/}.yaml" 2>/dev/null || ok=0
    done
    "$KC" -n "$(shop_ns catalog)" get configmap datashare-gateway-products -o jsonpath='{.data.gateway\.yaml}' \
      >"$S/rendered/gateway.yaml" 2>/dev/null || ok=0
    grep -q 'role: owner' "$S/rendered/product-service.yaml" || ok=0
    grep -q 'role: copy' "$S/rendered/billing-service.yaml" || ok=0
    ((ok)) && return 0
    (($(date +%s) < deadline)) || die "the operator did not render the sidecar and gateway configs in 60 s (log: $S/logs/operator.log)"
    sleep 0.5
  done
}

# shop_localize NAME IN OUT: the operator's rendering made to run here — listen addresses on
# 127.0.0.1 with this run's ports (SHOP_PORT[NAME.data|admin|participant]), dataDir under $S,
# every cluster address (<service>.<namespace>.svc:<port>) replaced by the local process behind
# it, and the Kafka bootstrap the broker in use. An address it does not know is an error.
shop_localize() {
  local name=$1 in=$2 out=$3 cat w from to
  cat=$(shop_ns catalog)
  local -a map=("product-service.$cat.svc:8080=127.0.0.1:${SHOP_PORT[product-service.app]}"
    "datashare-gateway-products.$cat.svc:8080=127.0.0.1:${SHOP_PORT[gateway.data]}")
  for w in "${SHOP_WORKLOADS[@]}"; do
    map+=("datashare-tx-${w#*/}.$(shop_ns "${w%/*}").svc:8091=127.0.0.1:${SHOP_PORT[${w#*/}.participant]:-0}")
  done
  awk -v data="${SHOP_PORT[$name.data]:-0}" -v admin="${SHOP_PORT[$name.admin]:-0}" \
    -v participant="${SHOP_PORT[$name.participant]:-0}" -v datadir="$S/data/$name" \
    -v kafka="$DATASHARE_KAFKA_BOOTSTRAP" '
    BEGIN { port["data"] = data; port["admin"] = admin; port["participant"] = participant }
    /^listen:/ { inlisten = 1; print; next }
    /^[^ ]/ { inlisten = 0 }
    inlisten && match($0, /^  (data|admin|participant): /) {
      role = substr($0, 3, RLENGTH - 4)
      printf "  %s: {address: 127.0.0.1, port: %s}\n", role, port[role]; next
    }
    /^dataDir:/ { print "dataDir: " datadir; next }
    /^  bootstrapServers:/ { print "  bootstrapServers: " kafka; next }
    { print }' "$in" >"$out.tmp"
  for w in "${map[@]}"; do
    from=${w%%=*} to=${w#*=}
    sed -i "s|http://${from//./\\.}|http://$to|g" "$out.tmp"
  done
  if grep -n '\.svc\b' "$out.tmp" >&2; then die "$out: a cluster address shop_localize does not know (above)"; fi
  mv "$out.tmp" "$out"
}

# Ports, configs and processes: the four sidecars, the gateway, the Product service and the
# three Order services, each ready before this returns.
shop_start_services() {
  local w name role
  for w in "${SHOP_WORKLOADS[@]}"; do
    for role in app data admin participant; do SHOP_PORT[${w#*/}.$role]=$(free_port); done
  done
  SHOP_PORT[gateway.data]=$(free_port)
  SHOP_PORT[gateway.admin]=$(free_port)
  mkdir -p "$S/config" "$S/data"
  for w in "${SHOP_WORKLOADS[@]}"; do
    name=${w#*/}
    shop_localize "$name" "$S/rendered/$name.yaml" "$S/config/$name-sidecar.yaml"
    "$BIN/datashare-sidecar" --config "$S/config/$name-sidecar.yaml" --check >/dev/null ||
      die "$S/config/$name-sidecar.yaml does not validate"
    shop_start "$name-sidecar" "$BIN/datashare-sidecar" --config "$S/config/$name-sidecar.yaml"
  done
  shop_localize gateway "$S/rendered/gateway.yaml" "$S/config/gateway.yaml"
  shop_start gateway "$BIN/datashare-gateway" --config "$S/config/gateway.yaml"
  shop_start product-service "$BIN/datashare-shop-products" --listen "127.0.0.1:${SHOP_PORT[product-service.app]}" \
    --sidecar "$(shop_url product-service.data)"
  for name in "${SHOP_CONSUMERS[@]}"; do
    shop_start "$name" "$BIN/datashare-shop-orders" --listen "127.0.0.1:${SHOP_PORT[$name.app]}" \
      --sidecar "$(shop_url "$name.data")"
  done
  for w in "${SHOP_WORKLOADS[@]}"; do
    wait_for "${w#*/}-sidecar" 60 curl -sf "$(shop_url "${w#*/}.admin")/healthz"
  done
  wait_for gateway 60 curl -sf "$(shop_url gateway.admin)/readyz"
  wait_for product-service 30 curl -s -o /dev/null "$(shop_url product-service.app)/products/none"
  for name in "${SHOP_CONSUMERS[@]}"; do wait_for "$name" 30 curl -sf "$(shop_url "$name.app")/healthz"; done
}

# A Prometheus (Debian's) scraping the operator, the sidecars and the gateway every second.
shop_start_prometheus() {
  local w
  command -v prometheus >/dev/null || die "prometheus not found: run hack/install-deps.sh (Debian package prometheus)"
  SHOP_PORT[prometheus]=$(free_port)
  {
    echo "global: {scrape_interval: 1s, evaluation_interval: 1s}"
    echo "scrape_configs:"
    echo "  - job_name: datashare-operator"
    echo "    honor_labels: true"
    echo "    static_configs: [{targets: [\"127.0.0.1:${SHOP_PORT[operator.metrics]}\"]}]"
    echo "  - job_name: datashare-sidecar"
    echo "    static_configs:"
    for w in "${SHOP_WORKLOADS[@]}"; do
      echo "      - {targets: [\"127.0.0.1:${SHOP_PORT[${w#*/}.admin]}\"], labels: {namespace: $(shop_ns "${w%/*}"), workload: ${w#*/}}}"
    done
    echo "  - job_name: datashare-gateway"
    echo "    static_configs: [{targets: [\"127.0.0.1:${SHOP_PORT[gateway.admin]}\"], labels: {namespace: $(shop_ns catalog)}}]"
  } >"$S/prometheus.yml"
  shop_start prometheus prometheus --config.file="$S/prometheus.yml" --storage.tsdb.path="$S/prometheus" \
    --web.listen-address="127.0.0.1:${SHOP_PORT[prometheus]}"
  wait_for prometheus 60 curl -sf "$(shop_url prometheus)/-/ready"
}

# shop_prom_query EXPR: the result vector as "labels value" lines (labels as {k="v",...}).
shop_prom_query() {
  curl -sf -G --data-urlencode "query=$1" "$(shop_url prometheus)/api/v1/query" |
    jq -r '.data.result[] | "{" + ([.metric | to_entries[] | "\(.key)=\"\(.value)\""] | join(",")) + "} " + .value[1]'
}

# The catalog's edit: PUT /catalog/products/KEY on the Product service (stored, then published
# through its sidecar). Prints the answer.
shop_edit_product() { curl -sf -X PUT -H 'Content-Type: application/json' --data "$2" "$(shop_url product-service.app)/catalog/products/$1"; }
# An all-or-nothing update through the gateway coordinator: the owner and billing's copy.
shop_gateway_put() { curl -sf -X PUT -H 'Content-Type: application/json' --data "$2" "$(shop_url gateway.data)/v1/data/products/$1"; }
# shop_place_order SERVICE PRODUCT: the new order's id.
shop_place_order() {
  curl -sf -X POST -H 'Content-Type: application/json' --data "{\"product\":\"$2\",\"quantity\":1}" \
    "$(shop_url "$1.app")/orders" | jq -r .id
}
# shop_order_name SERVICE ORDER: the product name the order shows now ("null" when none).
shop_order_name() { curl -sf "$(shop_url "$1.app")/orders/$2" | jq -r .productName; }

# shop_wait_name SERVICE ORDER NAME SINCE_NS: until the order shows NAME (20 s at most); prints
# the milliseconds from SINCE_NS (date +%s%N) to the read that showed it.
shop_wait_name() {
  until [[ "$(shop_order_name "$1" "$2")" == "$3" ]]; do
    (($(date +%s%N) - $4 < 20000000000)) || return 1
    sleep 0.02
  done
  echo $((($(date +%s%N) - $4) / 1000000))
}

# shop_has SERVICE KEY NAME: the service's sidecar serves product KEY with that name (the topic
# may hold older values of KEY, from earlier runs: they are replayed first).
shop_has() { [[ "$(curl -sf "$(shop_url "$1.data")/v1/data/products/$2" | jq -r .name)" == "$3" ]]; }

# shop_counted SERVICE N: the sidecar's datashare_propagation_seconds_count is above N.
shop_counted() { (($(shop_metric "$1.admin" datashare_propagation_seconds_count) > $2)); }

# The scenario, the same for `make run` and the e2e test; what the services saw goes to SHOP_SEEN:
#   <service>.order .product .before   the order placed, its product, the name it showed then
#   <service>.right_after              the name shown by the first read after the rename's answer
#   <service>.ms .after                milliseconds from the rename's answer to the read showing the
#                                      new name (polled from here: curl's time included), and that name
#   <service>.prop_ms                  the rename's propagation, publish → applied, as the sidecar measured
#                                      it (datashare_propagation_seconds, the histogram's growth)
# 1. p-1 and p-2 created through the gateway (owner and billing's copy together; the committed
#    value is published, so the event and hybrid copies get them from the topic), one order each;
# 2. event and hybrid: the catalog renames p-1 through the Product service (stored, published);
# 3. sync + gateway: p-2 renamed through the gateway coordinator.
declare -A SHOP_SEEN=()
SHOP_OLD=("Espresso cup" "Teapot")
SHOP_NEW=("Espresso mug" "Teapot, cast iron")
shop_product_json() {  # KEY NAME PRICE GRAMS EMAIL
  printf '{"id":"%s","name":"%s","price":%s,"weightGrams":%s,"supplierEmail":"%s"}' "$@"
}
shop_scenario() {
  local s t0
  shop_gateway_put p-1 "$(shop_product_json p-1 "${SHOP_OLD[0]}" 4.5 180 cups@example.org)" >/dev/null ||
    die "the gateway did not commit p-1 (log: $S/logs/gateway.log)"
  shop_gateway_put p-2 "$(shop_product_json p-2 "${SHOP_OLD[1]}" 32 900 pots@example.org)" >/dev/null ||
    die "the gateway did not commit p-2 (log: $S/logs/gateway.log)"
  for s in order-service shipping-service; do
    wait_for "$s-sidecar" 30 shop_has "$s" p-1 "${SHOP_OLD[0]}"
    wait_for "$s-sidecar" 30 shop_has "$s" p-2 "${SHOP_OLD[1]}"
  done
  SHOP_SEEN[order-service.product]=p-1 SHOP_SEEN[shipping-service.product]=p-1 SHOP_SEEN[billing-service.product]=p-2
  for s in "${SHOP_CONSUMERS[@]}"; do
    SHOP_SEEN[$s.order]=$(shop_place_order "$s" "${SHOP_SEEN[$s.product]}") || die "$s did not take an order"
    SHOP_SEEN[$s.before]=$(shop_order_name "$s" "${SHOP_SEEN[$s.order]}")
  done

  for s in order-service shipping-service; do
    SHOP_SEEN[$s.prop_sum]=$(shop_metric "$s.admin" datashare_propagation_seconds_sum)
    SHOP_SEEN[$s.prop_count]=$(shop_metric "$s.admin" datashare_propagation_seconds_count)
  done
  shop_edit_product p-1 "$(shop_product_json p-1 "${SHOP_NEW[0]}" 4.5 180 cups@example.org)" >/dev/null ||
    die "the Product service did not take the rename of p-1 (logs: $S/logs/product-service*.log)"
  t0=$(date +%s%N)
  for s in order-service shipping-service; do SHOP_SEEN[$s.right_after]=$(shop_order_name "$s" "${SHOP_SEEN[$s.order]}"); done
  for s in order-service shipping-service; do
    SHOP_SEEN[$s.ms]=$(shop_wait_name "$s" "${SHOP_SEEN[$s.order]}" "${SHOP_NEW[0]}" "$t0") ||
      die "$s never showed \"${SHOP_NEW[0]}\" (log: $S/logs/$s-sidecar.log)"
    SHOP_SEEN[$s.after]=$(shop_order_name "$s" "${SHOP_SEEN[$s.order]}")
    wait_for "$s-sidecar" 10 shop_counted "$s" "${SHOP_SEEN[$s.prop_count]}"
    SHOP_SEEN[$s.prop_ms]=$(awk -v a="${SHOP_SEEN[$s.prop_sum]}" -v b="$(shop_metric "$s.admin" datashare_propagation_seconds_sum)" \
      -v n="$(($(shop_metric "$s.admin" datashare_propagation_seconds_count) - SHOP_SEEN[$s.prop_count]))" \
      'BEGIN { printf "%.2f", 1000 * (b - a) / n }')
  done

  shop_gateway_put p-2 "$(shop_product_json p-2 "${SHOP_NEW[1]}" 32 900 pots@example.org)" >/dev/null ||
    die "the gateway did not commit the rename of p-2 (log: $S/logs/gateway.log)"
  t0=$(date +%s%N)
  s=billing-service
  SHOP_SEEN[$s.right_after]=$(shop_order_name "$s" "${SHOP_SEEN[$s.order]}")
  SHOP_SEEN[$s.ms]=$(shop_wait_name "$s" "${SHOP_SEEN[$s.order]}" "${SHOP_NEW[1]}" "$t0") ||
    die "$s never showed \"${SHOP_NEW[1]}\" (log: $S/logs/$s-sidecar.log)"
  SHOP_SEEN[$s.after]=$(shop_order_name "$s" "${SHOP_SEEN[$s.order]}")
}

# shop_metric PORT_NAME SERIES: the sum of SERIES (name with optional {labels} prefix) scraped
# from /metrics at SHOP_PORT[PORT_NAME].
shop_metric() {
  curl -sf "$(shop_url "$1")/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { printf "%.9g\n", s }'
}

# Fails (die, with the log's tail) when a process shop_start started is no longer running.
shop_check_alive() {
  local name
  for name in "${SHOP_STARTED[@]}"; do
    alive "$name" || { tail -n 30 "$S/logs/$name.log" >&2; die "$name exited (log: $S/logs/$name.log)"; }
  done
}

# shop_stop_all [KEEP...]: stops everything shop_start started but KEEP, all at once with
# SIGTERM, then waits up to 30 s (the operator finishes the reconciles under way, each bounded
# by its API calls' timeouts); what is still running gets SIGKILL and is named on stderr
# (status 1).
shop_stop_all() {
  local name p keep=" $* " survivors=() stopping=() deadline
  for name in "${SHOP_STARTED[@]}"; do
    [[ "$keep" == *" $name "* ]] && continue
    stopping+=("$name")
    p=$(pid_of "$name")
    [[ -n "$p" ]] && kill -TERM "$p" 2>/dev/null || true
  done
  deadline=$(($(date +%s) + 30))
  for name in "${stopping[@]}"; do
    p=$(pid_of "$name")
    [[ -n "$p" ]] || continue
    while kill -0 "$p" 2>/dev/null && (($(date +%s) < deadline)); do sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      survivors+=("$name")
      kill -KILL "$p" 2>/dev/null || true
    fi
    rm -f "$S/pids/$name.pid"
  done
  SHOP_STARTED=("$@")
  if ((${#survivors[@]})); then
    echo "still running 30 s after SIGTERM (killed): ${survivors[*]}" >&2
    return 1
  fi
}
