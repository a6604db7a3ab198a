#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given binaries load, one a line:
# the runtime image installs exactly these (`ldd` of what was built, so a new dependency needs no
# edit here). Run inside the build stage, where the -dev packages are installed.
#
#   docker/runtime-packages.sh BINARY...
set -euo pipefail
for binary in "$@"; do
  ldd "$binary" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do
  # Debian 12 is usr-merged: the loader may report /lib/... for a file dpkg knows as /usr/lib/...
  # (or the other way round), so ask for the real path and both spellings.
  real=$(readlink -f "$lib")
  found=""
  for candidate in "$lib" "$real" "/usr${lib#/usr}" "/usr${real#/usr}" "${lib#/usr}" "${real#/usr}"; do
    if owner=$(dpkg -S "$candidate" 2>/dev/null); then
      found="${owner%%:*}"
      break
    fi
  done
  [[ -n "$found" ]] || { echo "runtime-packages: no Debian package holds $lib" >&2; exit 1; }
  echo "$found"
done | sort -u
