#!/usr/bin/env bash
# The chaos suite (`make chaos`): each scenario is one of the project's integration tests, run at
# the full sizes of issue #9 against the real local cluster, Kafka, operator, sidecars and gateway.
# Prints ONE line per scenario with its figures ("CHAOS <scenario> k=v ... result=ok|FAILED") and
# exits non-zero when any scenario loses anything or fails. make test runs the same tests at
# their reduced default sizes (ctest label `chaos`).
#
#   hack/chaos.sh                 every scenario
#   hack/chaos.sh replica-kill    some of them (names: hack/chaos.sh --list)
#
# Sizes (environment; the defaults are the issue's):
#   DATASHARE_CHAOS_EVENTS=1000000  DATASHARE_CHAOS_KILLS=20  DATASHARE_CHAOS_KEYS=20000   replica-kill
#   DATASHARE_CHAOS_OUTAGE_SECONDS=30                                                    broker-outage
#   DATASHARE_CHAOS_FREEZE_SECONDS=30 (broker SIGSTOPped: a partition seen from the sidecar) broker-freeze
#   DATASHARE_CHAOS_PUBLISHER_KILLS=20  DATASHARE_CHAOS_PUBLISHER_KEYS=50                publisher-kill
#   DATASHARE_CHAOS_ROUNDS=10 (kills at each of the 3 protocol points)                   coordinator-kill
#   DATASHARE_CHAOS_OPERATOR_POLICIES=50  DATASHARE_CHAOS_OPERATOR_KILLS=10              operator-faults
#   DATASHARE_CHAOS_OWNER_FAULT_SECONDS=30 (owner cut off, then hanging)                 owner-faults
#   CHAOS_SCENARIO_TIMEOUT=1800 (seconds, per scenario)   PRESET=dev (the build to run)
# Logs of every scenario: build/$PRESET/chaos/<scenario>.log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/hack/lib/common.sh"
preset=${PRESET:-dev}
build="$root/build/$preset"

export DATASHARE_CHAOS_EVENTS=${DATASHARE_CHAOS_EVENTS:-1000000}
export DATASHARE_CHAOS_KILLS=${DATASHARE_CHAOS_KILLS:-20}
export DATASHARE_CHAOS_KEYS=${DATASHARE_CHAOS_KEYS:-20000}
export DATASHARE_CHAOS_OUTAGE_SECONDS=${DATASHARE_CHAOS_OUTAGE_SECONDS:-30}
export DATASHARE_CHAOS_PUBLISHER_KILLS=${DATASHARE_CHAOS_PUBLISHER_KILLS:-20}
export DATASHARE_CHAOS_FREEZE_SECONDS=${DATASHARE_CHAOS_FREEZE_SECONDS:-30}
export DATASHARE_CHAOS_ROUNDS=${DATASHARE_CHAOS_ROUNDS:-10}
export DATASHARE_CHAOS_OWNER_FAULT_SECONDS=${DATASHARE_CHAOS_OWNER_FAULT_SECONDS:-30}
export DATASHARE_CHAOS_OPERATOR_POLICIES=${DATASHARE_CHAOS_OPERATOR_POLICIES:-50}
export DATASHARE_CHAOS_OPERATOR_KILLS=${DATASHARE_CHAOS_OPERATOR_KILLS:-10}
scenario_timeout=${CHAOS_SCENARIO_TIMEOUT:-1800}

# scenario → "ctest test name|gtest filter (empty for a script test)"
declare -A scenarios=(
  [replica-kill]="sidecar_crash_test|*SidecarCrashTest.*/Default"
  [broker-outage]="sidecar_outage_test|SidecarOutageTest.BrokerDown*"
  [broker-freeze]="sidecar_outage_test|SidecarOutageTest.BrokerFrozen*"
  [owner-faults]="sidecar_owner_fault_test|SidecarOwnerFaultTest.*"
  [operator-faults]="controllers_operator_chaos_test|"
  [publisher-kill]="sidecar_publisher_kill_test|SidecarPublisherKillTest.*"
  [coordinator-kill]="gateway_integration_test|gateway_test.KillAtEachProtocolPoint*"
  [copy-cut-off]="sidecar_sync_test|SidecarSyncTest.HybridCopyCutOff*"
)
order=(replica-kill broker-outage publisher-kill coordinator-kill operator-faults broker-freeze owner-faults copy-cut-off)

if [[ "${1:-}" == "--list" ]]; then printf '%s\n' "${order[@]}"; exit 0; fi
selected=("$@")
(( ${#selected[@]} > 0 )) || selected=("${order[@]}")
for s in "${selected[@]}"; do [[ -n "${scenarios[$s]:-}" ]] || die "unknown scenario $s (hack/chaos.sh --list)"; done

[[ -f "$build/CTestTestfile.cmake" ]] || die "no build in $build: run make build (or make chaos)"
mkdir -p "$build/chaos"
tests_json="$build/chaos/tests.json"
ctest --test-dir "$build" --show-only=json-v1 > "$tests_json"

# The cluster, as ctest's fixture brings it up: reused when running, stopped at the end only if
# started here.
env_file="$build/chaos/cluster.env"
"$root/tests/fixtures/cluster.sh" setup "$env_file" > "$build/chaos/cluster.log" 2>&1 ||
  { cat "$build/chaos/cluster.log" >&2; die "the local cluster did not start"; }
trap '"$root/tests/fixtures/cluster.sh" cleanup "$env_file" >> "$build/chaos/cluster.log" 2>&1 || true' EXIT

echo "chaos: $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), preset $preset," \
  "events=$DATASHARE_CHAOS_EVENTS kills=$DATASHARE_CHAOS_KILLS outage=${DATASHARE_CHAOS_OUTAGE_SECONDS}s"
failed=0
for s in "${selected[@]}"; do
  test_name=${scenarios[$s]%%|*} filter=${scenarios[$s]#*|}
  # The test's command and environment exactly as ctest would run it.
  mapfile -t command < <(jq -r --arg n "$test_name" '.tests[] | select(.name == $n) | .command[]' "$tests_json")
  mapfile -t environment < <(jq -r --arg n "$test_name" \
    '.tests[] | select(.name == $n) | .properties[] | select(.name == "ENVIRONMENT") | .value[]' "$tests_json")
  (( ${#command[@]} > 0 )) || die "$test_name is not a test of $build (rebuild?)"
  if [[ -n "$filter" ]]; then command+=("--gtest_filter=$filter"); fi
  log_file="$build/chaos/$s.log"
  start=$(date +%s)
  set +e
  (cd "$build" && env "${environment[@]}" DATASHARE_ENV_FILE="$env_file" \
    timeout -k 10 "$scenario_timeout" "${command[@]}") > "$log_file" 2>&1
  rc=$?
  set -e
  seconds=$(( $(date +%s) - start ))
  line=$(grep -a "^CHAOS $s " "$log_file" | tail -1 || true)
  if (( rc == 0 )) && [[ -n "$line" && "$line" == *" lost=0"* ]]; then
    echo "$line load=$(cut -d' ' -f1 /proc/loadavg) result=ok"
  else
    failed=$((failed + 1))
    echo "${line:-CHAOS $s} exit=$rc wall_seconds=$seconds result=FAILED (log: $log_file)"
    grep -a -E "Failure|FAILED|error" "$log_file" | head -20 | sed 's/^/    /'
  fi
done
echo "chaos: ${#selected[@]} scenarios, $failed failed, load $(cut -d' ' -f1-3 /proc/loadavg)"
(( failed == 0 ))
