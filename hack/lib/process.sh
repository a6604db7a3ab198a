# shellcheck shell=bash
# Starting, watching and stopping the local servers by pid. Sourced, never run.
# Callers set S (a state directory with pids/ and logs/ inside).

pid_of() { cat "$S/pids/$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

port_in_use() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

# A free TCP port on 127.0.0.1 not handed out before from this state directory.
# Ports come from 12000-21999: below the kernel's ephemeral range (32768+ by default), so an
# outgoing connection cannot take the port between this pick and the server's bind, and apart
# from 22000-32767, where the C++ test harnesses pick theirs.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 12000 + RANDOM % 10000 ))
    port_in_use "$p" && continue
    grep -qx "$p" "$S/ports.taken" 2>/dev/null && continue
    echo "$p" >> "$S/ports.taken"
    echo "$p"
    return
  done
  die "no free port found"
}

# wait_for NAME TIMEOUT_SECONDS COMMAND...: until COMMAND succeeds, failing early if NAME exits.
wait_for() {
  local name=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || { tail -n 30 "$S/logs/$name.log" >&2; die "$name exited during start-up (log: $S/logs/$name.log)"; }
    (( $(date +%s) < deadline )) || { tail -n 30 "$S/logs/$name.log" >&2; die "$name not healthy after ${timeout}s (log: $S/logs/$name.log)"; }
    sleep 0.3
  done
}

# start NAME COMMAND...: runs COMMAND detached (setsid: it outlives this shell and gets no
# terminal signals), logging to $S/logs/NAME.log, pid in $S/pids/NAME.pid.
start() {
  local name=$1; shift
  mkdir -p "$S/pids" "$S/logs"
  setsid "$@" >>"$S/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$S/pids/$name.pid"
}

# stop NAME [SIGNAL]: TERM (or SIGNAL), up to 10 s, then KILL; only the pid we started.
stop() {
  local name=$1 sig=${2:-TERM} p
  p=$(pid_of "$name")
  [[ -n "$p" ]] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill "-$sig" "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$S/pids/$name.pid"
}
