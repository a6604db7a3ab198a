#!/usr/bin/env bash
# Copies the CRDs (crds/*.yaml, the source) into the Helm chart (charts/datashare/crds/), which
# Helm only reads from inside the chart. ctest chart_render_test fails while the two differ.
#
#   hack/sync-chart-crds.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/charts/datashare/crds"
mkdir -p "$dest"
rm -f "$dest"/*.yaml
cp "$root"/crds/*.yaml "$dest/"
echo "charts/datashare/crds: $(cd "$dest" && ls ./*.yaml | xargs -n1 basename | tr '\n' ' ')"
