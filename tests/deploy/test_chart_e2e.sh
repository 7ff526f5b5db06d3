#!/usr/bin/env bash
# test_chart_e2e.sh: the chart's default render runs. The three tier
# binaries are started on this machine exactly as the rendered Deployments
# start them (command, args, env, the ConfigMap's config; Service names
# resolved to 127.0.0.1, ports moved to free ones with --set), their probes
# are polled, the chart's `helm test` pod script publishes and subscribes
# through the edge, and the edge must drain and exit on SIGTERM within its
# terminationGracePeriodSeconds. See run_render.py.
#
#   HAWSER_BIN_DIR  directory with hawser-edge/-broker/-router (default
#                   build/bin if complete, else built into build-deploy/)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
chart="$root/deploy/helm/hawser"
source "$root/tests/deploy/tools.sh"
command -v mosquitto_pub >/dev/null || { echo "FAIL: mosquitto-clients not installed"; echo "0 passed, 1 failed"; exit 1; }

bins=(hawser-edge hawser-broker hawser-router)
have_all() { local b; for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done; }
bindir="${HAWSER_BIN_DIR:-}"
if [ -z "$bindir" ]; then
	if have_all "$root/build/bin"; then
		bindir="$root/build/bin"
	else
		bindir="$root/build-deploy/bin"
		say "building ${bins[*]} in build-deploy/"
		cmake -S "$root" -B "$root/build-deploy" -G Ninja -DHAWSER_TESTS=OFF >/dev/null
		cmake --build "$root/build-deploy" --target "${bins[@]}" >/dev/null
	fi
fi

bindir="$(cd "$bindir" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Nine free TCP ports (closed again before use; good enough on a test host).
read -r -a port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')
"$helm" template hawser "$chart" -n hawser-e2e \
	--set edge.ports.mqtt="${port[0]}",edge.service.ports.mqtt="${port[0]}" \
	--set edge.ports.ws="${port[1]}",edge.ports.http="${port[2]}",edge.ports.inbox="${port[3]}" \
	--set broker.ports.inbox="${port[4]}",broker.ports.http="${port[5]}" \
	--set router.ports.inbox="${port[6]}",router.ports.http="${port[7]}" \
	--set edge.config.drain_timeout_ms=3000,tests.timeoutSeconds=15 \
	>"$work/render.yaml"

set +e
"$py" "$root/tests/deploy/run_render.py" "$work/render.yaml" "$bindir" "$work" | tee "$work/out"
rc=${PIPESTATUS[0]}
set -e
n_ok=$(grep -c '^ok:' "$work/out" || true)
n_fail=$(grep -c '^FAIL:' "$work/out" || true)
if [ "$rc" -ne 0 ] && [ "$n_fail" -eq 0 ]; then n_fail=1; fi
printf '%d passed, %d failed\n' "$n_ok" "$n_fail"
exit "$rc"
