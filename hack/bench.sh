#!/usr/bin/env bash
# `make bench`: runs each benchmark suite (bench/<suite>/run.sh) on the release build. Each suite
# measures its figures beside their anchors in the same run and prints one summary line per bar,
# in the form docs/benchmarks.md records them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$DATASHARE_ROOT"
shopt -s nullglob
suites=(bench/*/run.sh)
(( ${#suites[@]} )) || { log "no benchmark suites in bench/"; exit 0; }
for s in "${suites[@]}"; do
  log "running $s"
  bash "$s"
done
