#!/usr/bin/env bash
# test_grafana.sh: deploy/grafana/hawser.json is a Grafana dashboard whose
# every query names only metrics the tiers register (hw_metrics_counter/
# gauge/histogram calls in services/ and libs/), so it cannot go stale: a
# renamed metric fails here. See check_grafana.py.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python3 "$root/tests/deploy/check_grafana.py" "$root"
