#!/usr/bin/env bash
# Runs every benchmark built by the release preset (build/release/bench/*), each beside its
# anchor in the same run; docs/benchmarks.md records the figures and the commands.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$DATASHARE_ROOT"
shopt -s nullglob
benches=(build/release/bench/*)
if (( ${#benches[@]} == 0 )); then
  log "no benchmarks are built yet (bench/ is empty); see docs/benchmarks.md"
  exit 0
fi
for b in "${benches[@]}"; do
  [[ -x "$b" ]] || continue
  log "running $b"
  "$b"
done
