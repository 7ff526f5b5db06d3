#!/usr/bin/env bash
# Installs dependencies, builds, runs the unit tests (ctest) and the
# integration suite (pytest, real binaries and real MQTT clients).
# Exits non-zero if anything fails, including "no tests ran".
# Extra arguments go to pytest (e.g. -k retained, -x).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/deps.sh || { echo "[test] FAILED: scripts/deps.sh"; exit 1; }
bash scripts/build.sh || { echo "[test] FAILED: scripts/build.sh"; exit 1; }

echo "[test] unit tests: ctest --test-dir build --output-on-failure"
ctest --test-dir build --output-on-failure --timeout 120
unit_rc=$?
# ctest exits 0 with "No tests were found" too; that counts as a failure.
if [ "$unit_rc" -eq 0 ] && [ -z "$(ctest --test-dir build -N | grep -E '^ *Test +#')" ]; then
	echo "[test] ctest found no unit tests"
	unit_rc=8
fi

echo "[test] integration tests: pytest tests/integration"
HAWSER_BIN_DIR="$root/build/bin" "$root/tests/.venv/bin/python" -m pytest \
	-p no:cacheprovider -rfEs --timeout=60 --durations=10 \
	tests/integration "$@"
it_rc=$?
if [ "$it_rc" -eq 5 ]; then
	echo "[test] pytest collected no tests"
fi

# Deploy checks: the container image's runtime libraries, the Helm chart
# (lint, render, kubeconform against offline schemas), deploy/k8s freshness,
# and the rendered Deployments run as local processes. Helm and kubeconform
# are built with Go on first use (minutes cold, seconds warm).
echo "[test] deploy tests: tests/deploy/run_all.sh"
HAWSER_BIN_DIR="$root/build/bin" bash tests/deploy/run_all.sh
deploy_rc=$?

verdict() { [ "$1" -eq 0 ] && echo passed || echo "FAILED (exit $1)"; }
echo
echo "[test] summary: unit tests (ctest) $(verdict "$unit_rc"),"\
" integration tests (pytest) $(verdict "$it_rc"), deploy tests $(verdict "$deploy_rc")"
if [ "$unit_rc" -ne 0 ] || [ "$it_rc" -ne 0 ] || [ "$deploy_rc" -ne 0 ]; then
	exit 1
fi
exit 0
