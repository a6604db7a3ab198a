#!/usr/bin/env bash
# clang-format (check, or --fix to apply; --format-only: the check alone) and clang-tidy over the
# project's C++ sources.
# clang-tidy reads build/dev/compile_commands.json (run `make build` first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$DATASHARE_ROOT"
mapfile -t files < <(git ls-files '*.cc' '*.h')
(( ${#files[@]} )) || exit 0
if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
command -v clang-format >/dev/null || die "clang-format is missing: run hack/install-deps.sh"
clang-format --dry-run -Werror "${files[@]}"
# --format-only: the check `make test` runs (seconds); clang-tidy takes minutes per core.
[[ "${1:-}" == "--format-only" ]] && exit 0
db="build/${PRESET:-dev}"
[[ -f "$db/compile_commands.json" ]] || die "no $db/compile_commands.json: run make build first"
mapfile -t sources < <(printf '%s\n' "${files[@]}" | grep '\.cc$')
# Sanitizer flags of the dev build are gcc's; clang-tidy ignores what it does not know.
clang-tidy -p "$db" --quiet --extra-arg=-Wno-unknown-warning-option "${sources[@]}"
