# shellcheck shell=bash
# What the shell tests share: pass/fail counting and the checks built on it, waiting for a
# condition, and the objects every scenario starts from. Sourced, never run. A test script sets its
# own `trap cleanup EXIT` and ends with `finish`. Needs $kubectl for the Kubernetes helpers.

passed=0 failed=0
pass() { passed=$((passed + 1)); [[ -z "${1:-}" ]] || echo "ok: $1"; }
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*" >&2; }
# Stops the test; counted as a failure, so a cleanup that prints logs on failure does.
fatal() { failed=$((failed + 1)); printf 'FATAL: %s\n' "$*" >&2; echo "$passed passed, $failed failed"; exit 1; }
finish() { echo "$passed passed, $failed failed"; (( failed == 0 )); exit $?; }

check() {  # description command...: the command must succeed (its output is shown when it does not)
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then pass "$what"; else fail "$what${out:+: ${out:0:600}}"; fi
}
refuse() {  # description expected-message command...: the command must fail, saying the message
  local what=$1 needle=$2; shift 2
  local out
  if out=$("$@" 2>&1); then fail "$what: accepted"; return; fi
  if [[ "$out" == *"$needle"* ]]; then pass "$what"; else fail "$what: \"$needle\" not in: $out"; fi
}
squeeze() { printf '%s' "$1" | tr -s ' \n' '  '; }  # runs of spaces and line breaks compare as one space
contains() {  # description text needle
  if [[ "$(squeeze "$2")" == *"$(squeeze "$3")"* ]]; then pass "$1"; else fail "$1: \"$3\" not in: ${2:0:600}"; fi
}
lacks() {  # description text needle
  if [[ "$(squeeze "$2")" != *"$(squeeze "$3")"* ]]; then pass "$1"; else fail "$1: \"$3\" should not be in the output"; fi
}

until_true() {  # seconds command...: polls every 0.5 s; false once the seconds are over
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do (( $(date +%s) < deadline )) || return 1; sleep 0.5; done
}
eventually() {  # description seconds command...
  local what=$1 seconds=$2; shift 2
  if until_true "$seconds" "$@"; then pass "$what"; else fail "$what (not within ${seconds}s)"; fi
}

# Kubernetes.
k() { "$kubectl" "$@"; }
condition() {  # namespace kind name type -> the condition's status
  "$kubectl" -n "$1" get "$2" "$3" -o jsonpath="{.status.conditions[?(@.type==\"$4\")].status}" 2>/dev/null
}
is_true() { [[ "$(condition "$@")" == True ]]; }
deployment_yaml() {  # name namespace [http-port]: a workload for the operator to inject into
  local ports=""
  [[ -n "${3:-}" ]] && ports=", ports: [{name: http, containerPort: $3}]"
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: $2}
spec:
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec: {containers: [{name: app, image: example.invalid/${1%-service}:1$ports}]}
YAML
}
