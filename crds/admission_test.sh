#!/usr/bin/env bash
# The CRDs against the real API server: they install (server-side apply, Established), teach the
# API through `kubectl explain`, admit the examples, and reject malformed resources AT ADMISSION,
# each with the field path and the rule's message. Nothing here needs the operator.
#
# Every case is one table line:
#   reject KIND 'merge patch onto the valid base object' 'field path' 'message'   (create, dry run)
#   reject_update KIND 'merge patch onto the stored example' 'field path' 'message' (update, dry run)
#   admit  KIND 'merge patch'                                                     (must pass)
# The path and the message must appear on the same line of the error.
#
# Unknown fields: kubectl's default field validation (strict) makes the API server REJECT them
# ("unknown field"); a client that turns validation off gets them PRUNED (checked at the end).
set -uo pipefail
[[ -n "${DATASHARE_ENV_FILE:-}" && -f "$DATASHARE_ENV_FILE" ]] && source "$DATASHARE_ENV_FILE"
: "${KUBECONFIG:?KUBECONFIG is not set: run through ctest (make test), which starts the local cluster}"
root="${DATASHARE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
source "$root/hack/lib/common.sh"
source "$root/hack/lib/shop.sh"  # shop_examples
kubectl=$(kubectl_bin) || { echo "kubectl not found: run hack/install-deps.sh" >&2; exit 1; }

suffix="adm-$$-$RANDOM"
catalog="catalog-$suffix" orders="orders-$suffix" shipping="shipping-$suffix" billing="billing-$suffix"
namespaces=("$catalog" "$orders" "$shipping" "$billing")
work=$(mktemp -d)
source "$root/hack/lib/testing.sh"  # pass/fail/fatal, check, contains
rejected=0

cleanup() {
  # Objects first (no finalizers without the operator), so the namespaces are empty even when
  # the namespace controller is slow to finish them.
  for ns in "${namespaces[@]}"; do
    "$kubectl" delete datasharingpolicies,dataproducts,deployments,services --all -n "$ns" \
      --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
  "$kubectl" delete namespace "${namespaces[@]}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# 1. Install: server-side apply (the CRDs are shared and re-applied by other tests), Established.
out=$("$kubectl" apply --server-side --force-conflicts -f "$root/crds/" 2>&1) || fatal "CRDs not applied: $out"
"$kubectl" wait --for=condition=Established --timeout=60s \
  crd/dataproducts.datashare.io crd/datasharingpolicies.datashare.io >/dev/null 2>&1 || fatal "CRDs not Established"
pass

names=$("$kubectl" get crd dataproducts.datashare.io datasharingpolicies.datashare.io \
  -o jsonpath='{range .items[*]}{.spec.names.shortNames[0]} {.spec.names.categories[0]} {.spec.scope} {.spec.versions[0].name};{end}')
contains "short names, category, scope, version" "$names" "dp datashare Namespaced v1alpha1;dsp datashare Namespaced v1alpha1;"

# Every property of spec and status has a description (kubectl explain teaches the API).
undocumented_template='{{define "walk"}}{{range $name, $s := .properties}}{{if not $s.description}}{{$name}} {{end}}{{template "walk" $s}}{{if $s.items}}{{template "walk" $s.items}}{{end}}{{end}}{{end}}{{range .spec.versions}}{{template "walk" .schema.openAPIV3Schema.properties.spec}}{{template "walk" .schema.openAPIV3Schema.properties.status}}{{end}}'
for crd in dataproducts.datashare.io datasharingpolicies.datashare.io; do
  undocumented=$("$kubectl" get crd "$crd" -o go-template="$undocumented_template" 2>&1)
  if [[ -z "$undocumented" ]]; then pass; else fail "$crd: properties without a description: $undocumented"; fi
done

# 2. kubectl explain, through the published OpenAPI (it may take a moment after Established).
for _ in $(seq 1 30); do
  "$kubectl" explain dataproduct.spec.topic >/dev/null 2>&1 && "$kubectl" explain dsp.spec.mode >/dev/null 2>&1 && break
  sleep 1
done
contains "explain dataproduct.spec.topic" "$("$kubectl" explain dataproduct.spec.topic 2>&1)" "PartitionDecreaseNotSupported"
contains "explain dataproduct.spec.topic lists its fields" "$("$kubectl" explain dataproduct.spec.topic 2>&1)" "deletionPolicy"
contains "explain dp.spec.fields.restricted" "$("$kubectl" explain dp.spec.fields.restricted 2>&1)" "never published to Kafka"
contains "explain dsp.spec.mode" "$("$kubectl" explain dsp.spec.mode 2>&1)" "hybrid: fields local from"
contains "explain datasharingpolicy.spec.consistency.maxLag" \
  "$("$kubectl" explain datasharingpolicy.spec.consistency.maxLag 2>&1)" "WithinLagBudget=False"
contains "explain dsp.status.lag.seconds" "$("$kubectl" explain dsp.status.lag.seconds 2>&1)" "Estimated staleness"

# ---------------------------------------------------------------------------------------------
# 3. The examples, applied for real into this run's namespaces (names and topic made unique), then
#    once more as a server dry run: they apply cleanly and unchanged.
shop_examples "-$suffix" >"$work/examples.yaml"
check "examples applied" "$kubectl" apply -f "$work/examples.yaml"
for ns_kind in "$catalog dataproduct/products" "$orders datasharingpolicy/order-service-products" \
               "$shipping datasharingpolicy/shipping-service-products" "$billing datasharingpolicy/billing-service-products"; do
  read -r ns obj <<<"$ns_kind"
  check "example $ns/$obj stored" "$kubectl" get -n "$ns" "$obj"
done
check "examples apply again as a server dry run" "$kubectl" apply --dry-run=server -f "$work/examples.yaml"
contains "defaults filled in (shipping: sync timeout, read index)" \
  "$("$kubectl" get dsp shipping-service-products -n "$shipping" -o jsonpath='{.spec.sync.timeout} {.spec.replica.maxEventBytes} {.spec.replica.readIndex} {.spec.consumer.workload.kind}')" \
  "300ms 1048576 auto Deployment"
contains "defaults filled in (products: restricted, deletionPolicy, outbox)" \
  "$("$kubectl" get dp products -n "$catalog" -o jsonpath='{.spec.fields[0].restricted} {.spec.topic.deletionPolicy} {.spec.owner.outbox.maxEntries}')" \
  "false Retain 100000"
contains "printer columns of dsp" "$("$kubectl" get dsp -n "$orders" 2>&1)" "NAME MODE PRODUCT LAG READY AGE"
contains "printer columns of dp" "$("$kubectl" get dp -n "$catalog" 2>&1)" "TOPIC"
contains "the datashare category lists both kinds" "$("$kubectl" get datashare -n "$catalog" 2>&1)" "dataproduct.datashare.io/products"
contains "selectable field spec.product.name" \
  "$("$kubectl" get dsp -A --field-selector "spec.product.namespace=$catalog,spec.mode=hybrid" -o name 2>&1)" \
  "datasharingpolicy.datashare.io/order-service-products"

# ---------------------------------------------------------------------------------------------
# 4. Malformed resources, each rejected at admission with its field path and message.
cat >"$work/dp.yaml" <<YAML
apiVersion: datashare.io/v1alpha1
kind: DataProduct
metadata: {name: case, namespace: $catalog}
spec:
  owner:
    workload: {kind: Deployment, name: product-service}
    endpoint: {service: product-service, port: 8080, readPath: "/products/{key}"}
  key: id
  fields:
    - {name: id, type: string}
    - {name: name, type: string}
    - {name: price, type: number}
    - {name: stock, type: integer}
    - {name: supplierEmail, type: string, restricted: true}
  topic: {name: case.products.v1, partitions: 3, replicationFactor: 1, config: {min.insync.replicas: "1"}}
  access: {namespaces: [$orders]}
YAML
cat >"$work/dsp.yaml" <<YAML
apiVersion: datashare.io/v1alpha1
kind: DataSharingPolicy
metadata: {name: case, namespace: $orders}
spec:
  product: {name: products, namespace: $catalog}
  consumer: {workload: {name: order-service}}
  mode: hybrid
  fields: [id, name]
  syncFields: [price]
YAML

base() { case $1 in dp) echo "$work/dp.yaml" ;; dsp) echo "$work/dsp.yaml" ;; esac; }
expect_rejected() {  # description, output, status, path, message
  local what=$1 out=$2 status=$3 path=$4 msg=$5
  if [[ $status -eq 0 ]]; then fail "$what: admitted, expected a rejection at $path"; return; fi
  if grep -F -- "$msg" <<<"$out" | grep -qF -- "$path"; then pass; rejected=$((rejected + 1))
  else fail "$what: expected \"$path\" with \"$msg\", got: $out"; fi
}
reject() {  # kind, merge patch, field path, message
  local obj out status
  obj=$("$kubectl" patch --local -f "$(base "$1")" --type=merge -p "$2" -o json 2>&1) || { fail "$1 $2: bad case: $obj"; return; }
  out=$("$kubectl" create --dry-run=server -f - <<<"$obj" 2>&1); status=$?
  expect_rejected "$1 $2" "$out" "$status" "$3" "$4"
}
admit() {  # kind, merge patch
  local obj out
  obj=$("$kubectl" patch --local -f "$(base "$1")" --type=merge -p "$2" -o json 2>&1) || { fail "$1 $2: bad case: $obj"; return; }
  if out=$("$kubectl" create --dry-run=server -f - <<<"$obj" 2>&1); then pass; else fail "$1 $2: rejected: $out"; fi
}
stored() { case $1 in dp) echo "dataproduct/products -n $catalog" ;; dsp) echo "datasharingpolicy/order-service-products -n $orders" ;; esac; }
reject_update() {  # kind, merge patch onto the stored example, field path, message
  local out status
  # shellcheck disable=SC2046  # stored prints "kind/name -n namespace"
  out=$("$kubectl" patch $(stored "$1") --type=merge -p "$2" --dry-run=server 2>&1); status=$?
  expect_rejected "update $1 $2" "$out" "$status" "$3" "$4"
}
admit_update() {
  local out
  # shellcheck disable=SC2046
  if out=$("$kubectl" patch $(stored "$1") --type=merge -p "$2" --dry-run=server 2>&1); then pass; else fail "update $1 $2: rejected: $out"; fi
}

check "the DataProduct base is valid" "$kubectl" create --dry-run=server -f "$work/dp.yaml"
check "the DataSharingPolicy base is valid" "$kubectl" create --dry-run=server -f "$work/dsp.yaml"
long_topic=$(printf 't%.0s' $(seq 1 250))
many_fields=$(printf '"f%d",' $(seq 1 129)); many_fields="[${many_fields%,}]"
before=$((passed + failed))

# DataProduct: required fields, types, enums, bounds
reject dp '{"spec":null}'                                         'spec'                          'Required value'
reject dp '{"spec":{"owner":null}}'                               'spec.owner'                    'Required value'
reject dp '{"spec":{"owner":{"workload":{"name":null}}}}'         'spec.owner.workload.name'      'Required value'
reject dp '{"spec":{"owner":{"workload":{"kind":"DaemonSet"}}}}'  'spec.owner.workload.kind'      'Unsupported value: "DaemonSet"'
reject dp '{"spec":{"owner":{"endpoint":{"port":70000}}}}'        'spec.owner.endpoint.port'      'should be less than or equal to 65535'
reject dp '{"spec":{"owner":{"endpoint":{"scheme":"ftp"}}}}'      'spec.owner.endpoint.scheme'    'Unsupported value: "ftp"'
reject dp '{"spec":{"owner":{"endpoint":{"readPath":"/products"}}}}' 'spec.owner.endpoint.readPath' 'readPath must start with / and contain the {key} placeholder'
reject dp '{"spec":{"key":null}}'                                 'spec.key'                      'Required value'
reject dp '{"spec":{"fields":[]}}'                                'spec.fields'                   'should have at least 1 items'
reject dp '{"spec":{"fields":"id,name"}}'                         'spec.fields'                   'must be of type array'
reject dp '{"spec":{"fields":[{"name":"id","type":"string"},{"name":"id","type":"number"}]}}' 'spec.fields[1]' 'Duplicate value'
reject dp '{"spec":{"fields":[{"name":"id","type":"string"},{"name":"born","type":"date"}]}}' 'spec.fields[1].type' 'Unsupported value: "date"'
reject dp '{"spec":{"fields":[{"name":"id","type":"string"},{"name":"unit price","type":"number"}]}}' 'spec.fields[1].name' 'should match'
reject dp '{"spec":{"fields":[{"name":"id","type":"string","restricted":"yes"}]}}' 'spec.fields[0].restricted' 'must be of type boolean'
reject dp '{"spec":{"key":"sku"}}'                                'spec.key'                      'key "sku" must be the name of one of the declared fields'
reject dp '{"spec":{"key":"supplierEmail"}}'                      'spec.key'                      'the key field cannot be restricted'
reject dp '{"spec":{"key":"price"}}'                              'spec.key'                      'the key field must be of type string or integer'
reject dp '{"spec":{"topic":{"name":null}}}'                      'spec.topic.name'               'Required value'
reject dp '{"spec":{"topic":{"name":"catalog/products"}}}'        'spec.topic.name'               "should match '^[a-zA-Z0-9._-]+\$'"
reject dp "{\"spec\":{\"topic\":{\"name\":\"$long_topic\"}}}"     'spec.topic.name'               'Too long'
reject dp '{"spec":{"topic":{"name":".."}}}'                      'spec.topic.name'               'topic name cannot be "." or ".."'
reject dp '{"spec":{"topic":{"partitions":0}}}'                   'spec.topic.partitions'         'should be greater than or equal to 1'
reject dp '{"spec":{"topic":{"partitions":"six"}}}'               'spec.topic.partitions'         'must be of type integer'
reject dp '{"spec":{"topic":{"replicationFactor":0}}}'            'spec.topic.replicationFactor'  'should be greater than or equal to 1'
reject dp '{"spec":{"topic":{"deletionPolicy":"Orphan"}}}'        'spec.topic.deletionPolicy'     'Unsupported value: "Orphan"'
reject dp '{"spec":{"topic":{"config":{"cleanup.policy":"delete"}}}}' 'spec.topic.config'         'cleanup.policy must keep compact'
reject dp '{"spec":{"topic":{"config":{"Retention.MS":"1000"}}}}' 'spec.topic.config'             'config keys are Kafka topic config names'
reject dp '{"spec":{"topic":{"config":{"retention.ms":1000}}}}'   'spec.topic.config.retention.ms' 'must be of type string'
reject dp '{"spec":{"topic":{"config":{"min.insync.replicas":"3"}}}}' 'spec.topic.config'         'min.insync.replicas cannot exceed replicationFactor'
reject dp '{"spec":{"access":{"namespaces":["*","orders"]}}}'     'spec.access.namespaces'        '"*" (every namespace) must be the only entry'
reject dp '{"spec":{"access":{"namespaces":["Orders"]}}}'         'spec.access.namespaces[0]'     'should match'
reject dp '{"metadata":{"name":"Products_1"}}'                    'metadata.name'                 'should match'
reject dp '{"spec":{"topic":{"partition":6}}}'                    'spec.topic.partition'          'unknown field "spec.topic.partition"'

# DataSharingPolicy: required fields, modes and their field lists, durations, bounds
reject dsp '{"spec":null}'                                        'spec'                          'Required value'
reject dsp '{"spec":{"product":null}}'                            'spec.product'                  'Required value'
reject dsp '{"spec":{"product":{"name":null}}}'                   'spec.product.name'             'Required value'
reject dsp '{"spec":{"product":{"namespace":"Catalog"}}}'         'spec.product.namespace'        'should match'
reject dsp '{"spec":{"consumer":null}}'                           'spec.consumer'                 'Required value'
reject dsp '{"spec":{"mode":null}}'                               'spec.mode'                     'Required value'
reject dsp '{"spec":{"mode":"fast"}}'                             'spec.mode'                     'Unsupported value: "fast"'
reject dsp '{"spec":{"mode":3}}'                                  'spec.mode'                     'must be of type string'
reject dsp '{"spec":{"syncFields":null}}'                         'spec.syncFields'               'hybrid mode needs at least one syncField'
reject dsp '{"spec":{"fields":null}}'                             'spec.fields'                   'hybrid mode needs at least one local field'
reject dsp '{"spec":{"mode":"event"}}'                            'spec.syncFields'               'Forbidden: event mode reads nothing from the owner'
reject dsp '{"spec":{"mode":"event","fields":null,"syncFields":null}}' 'spec.fields'              'event mode needs at least one field'
reject dsp '{"spec":{"mode":"sync","fields":[],"syncFields":null}}' 'spec.syncFields'             'sync mode needs syncFields'
reject dsp '{"spec":{"syncFields":["price","name"]}}'             'spec.syncFields'               'field "name" is in both fields and syncFields'
reject dsp '{"spec":{"fields":["id","id"]}}'                      'spec.fields[1]'                'Duplicate value: "id"'
reject dsp '{"spec":{"fields":"id,name"}}'                        'spec.fields'                   'must be of type array'
reject dsp "{\"spec\":{\"fields\":$many_fields}}"                 'spec.fields'                   'must have at most 128 items'
reject dsp '{"spec":{"consistency":{"maxLag":"5x"}}}'             'spec.consistency.maxLag'       'maxLag must be a duration such as 500ms, 5s or 1m30s'
reject dsp '{"spec":{"consistency":{"maxLag":"-5s"}}}'            'spec.consistency.maxLag'       'maxLag must be a duration'
reject dsp '{"spec":{"consistency":{"maxLag":"0"}}}'              'spec.consistency.maxLag'       'above 0 and at most 24h'
reject dsp '{"spec":{"consistency":{"maxLag":"25h"}}}'            'spec.consistency.maxLag'       'above 0 and at most 24h'
reject dsp '{"spec":{"consistency":{"maxLag":5}}}'                'spec.consistency.maxLag'       'must be of type string'
reject dsp '{"spec":{"sync":{"timeout":"300"}}}'                  'spec.sync.timeout'             'timeout must be a duration such as 300ms'
reject dsp '{"spec":{"sync":{"timeout":"2m"}}}'                   'spec.sync.timeout'             'above 0 and at most 1m'
reject dsp '{"spec":{"sync":{"maxInFlight":0}}}'                  'spec.sync.maxInFlight'         'should be greater than or equal to 1'
reject dsp '{"spec":{"sync":{"retries":{"backoff":"20us"}}}}'     'spec.sync.retries.backoff'     'backoff must be a duration such as 20ms'
reject dsp '{"spec":{"sync":{"retries":{"attempts":11}}}}'        'spec.sync.retries.attempts'    'should be less than or equal to 10'
reject dsp '{"spec":{"sync":{"circuitBreaker":{"consecutiveFailures":0}}}}' 'spec.sync.circuitBreaker.consecutiveFailures' 'should be greater than or equal to 1'
reject dsp '{"spec":{"sync":{"circuitBreaker":{"openFor":"0s"}}}}' 'spec.sync.circuitBreaker.openFor' 'openFor must be a duration'
reject dsp '{"spec":{"sync":{"cache":{"ttl":"30 s"}}}}'           'spec.sync.cache.ttl'           'ttl must be a duration such as 30s'
reject dsp '{"spec":{"sync":{"cache":{"maxEntries":-1}}}}'        'spec.sync.cache.maxEntries'    'should be greater than or equal to 0'
reject dsp '{"spec":{"replica":{"store":"redis"}}}'               'spec.replica.store'            'Unsupported value: "redis"'
reject dsp '{"spec":{"replica":{"maxEventBytes":10}}}'            'spec.replica.maxEventBytes'    'should be greater than or equal to 64'
reject dsp '{"spec":{"replica":{"readIndex":"disk"}}}'            'spec.replica.readIndex'        'Unsupported value: "disk"'
reject dsp '{"spec":{"replica":{"applyWorkers":0}}}'             'spec.replica.applyWorkers'     'should be greater than or equal to 1'
reject dsp '{"spec":{"replica":{"applyWorkers":65}}}'            'spec.replica.applyWorkers'     'should be less than or equal to 64'
reject dsp '{"spec":{"replica":{"applyWorkers":"4"}}}'           'spec.replica.applyWorkers'     'must be of type integer'
reject dsp '{"spec":{"replica":{"store":"memory","readIndex":"memory"}}}' 'spec.replica.readIndex' 'readIndex memory indexes a rocksdb copy'
reject dsp '{"spec":{"syncfields":["price"]}}'                    'spec.syncfields'               'unknown field "spec.syncfields"'

# Updates of immutable fields (transition rules), and a rule that holds on update too
reject_update dp  '{"spec":{"key":"name"}}'                       'spec.key'                      'key is immutable'
reject_update dp  '{"spec":{"topic":{"name":"catalog.products.v2"}}}' 'spec.topic.name'           'topic name is immutable'
reject_update dsp '{"spec":{"product":{"name":"articles"}}}'  'spec.product'                 'product is immutable'
reject_update dsp '{"spec":{"product":{"namespace":"elsewhere"}}}' 'spec.product'                 'product is immutable'
reject_update dsp '{"spec":{"mode":"event"}}'                     'spec.syncFields'               'event mode reads nothing from the owner'
cases=$((passed + failed - before))

# What the rules must still admit
admit dsp '{"spec":{"mode":"sync","syncFields":null}}'            # sync with a strongly consistent copy only
admit dsp '{"spec":{"mode":"sync","fields":null}}'                # sync reads only
admit dsp '{"spec":{"mode":"event","syncFields":[]}}'             # an empty syncFields is no syncFields
admit dsp '{"spec":{"consistency":{"maxLag":"1m30s"},"sync":{"timeout":"1.5s","retries":{"backoff":"0"}}}}'
admit dsp '{"spec":{"product":{"namespace":null}}}'               # same namespace
admit dp  '{"spec":{"access":{"namespaces":["*"]}}}'
admit dp  '{"spec":{"key":"stock","topic":{"config":{"cleanup.policy":"compact,delete"}}}}'
admit dsp '{"spec":{"replica":{"readIndex":"memory"}}}'
admit dsp '{"spec":{"replica":{"store":"memory"}}}'               # readIndex auto, the default, on a memory store
admit dsp '{"spec":{"replica":{"readIndex":"none"}}}'
admit dsp '{"spec":{"replica":{"applyWorkers":2}}}'
admit dp  '{"spec":{"owner":{"endpoint":null,"workload":{"kind":"StatefulSet"}},"access":null,"topic":{"replicationFactor":null,"partitions":null}}}'
admit_update dp  '{"spec":{"topic":{"partitions":12}}}'           # increase (a decrease is the operator's to refuse)
admit_update dsp '{"spec":{"mode":"sync"}}'                       # a mode change needs no app change
admit_update dsp '{"spec":{"consumer":{"workload":{"name":"order-service-v2"}}}}'

# Unknown fields with validation off are pruned, not stored.
pruned=$("$kubectl" patch --local -f "$work/dsp.yaml" --type=merge -p '{"spec":{"syncfields":["x"],"colour":"red"}}' -o json |
  "$kubectl" create --dry-run=server --validate=false -f - -o jsonpath='{.spec}' 2>&1)
if [[ -n "$pruned" && "$pruned" != *syncfields* && "$pruned" != *colour* && "$pruned" == *'"syncFields":["price"]'* ]]; then pass
else fail "unknown fields not pruned with --validate=false: $pruned"; fi

echo "$rejected of $cases malformed resources rejected at admission with their field path and message"
finish
