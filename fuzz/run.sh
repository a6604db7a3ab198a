#!/usr/bin/env bash
# Runs one libFuzzer target for a while from its committed seed corpus.
#
#   fuzz/run.sh BINARY SEED_DIR SECONDS [WORK_DIR]
#
# New inputs go to WORK_DIR (a temporary directory, removed afterwards, when not given): the
# committed seeds are only read. A crash, leak, sanitizer report or timeout exits non-zero and
# leaves the input in WORK_DIR/artifacts (kept then), with libFuzzer's report on stderr.
set -euo pipefail
bin=$1 seeds=$2 seconds=$3 work=${4:-}
[[ -x "$bin" ]] || { echo "fuzz/run.sh: $bin is not built (the fuzz build: cmake --preset fuzz)" >&2; exit 2; }
[[ -d "$seeds" ]] || { echo "fuzz/run.sh: no seed corpus $seeds" >&2; exit 2; }
keep=1
if [[ -z "$work" ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/datashare-fuzz.XXXXXX")
  keep=0
fi
mkdir -p "$work/corpus" "$work/artifacts"
# A dictionary of tokens (fuzz/dict/<target>.dict, or json.dict for the JSON-fed targets) helps
# the mutator reach members by name.
dict=()
name=$(basename "$bin")
here=$(dirname "${BASH_SOURCE[0]}")
case "$name" in
  fuzz_watch_stream | fuzz_crd_spec) dict=(-dict="$here/dict/json.dict") ;;
esac
status=0
# -timeout: one input taking longer is a hang; -rss_limit_mb: a parser must not blow up memory.
"$bin" "$work/corpus" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dict[@]}" 2>"$work/log" || status=$?
grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)|^#[0-9]+.*DONE' \
  "$work/log" || true
if (( status != 0 )); then
  cat "$work/log" >&2
  echo "fuzz/run.sh: $(basename "$bin") failed (exit $status); inputs kept in $work/artifacts" >&2
  exit "$status"
fi
(( keep )) || rm -rf "$work"
