#!/usr/bin/env bash
# test_chart_e2e.sh: the chart's default render runs. The three tier
# binaries are started on this machine exactly as the rendered Deployments
# start them (command, args, env, the ConfigMap's config; Service names
# resolved to 127.0.0.1, ports moved to free ones with --set), their probes
# are polled, the chart's `helm test` pod script publishes and subscribes
# through the edge, and the edge must drain and exit on SIGTERM within its
# terminationGracePeriodSeconds. Twice: default values, and TLS listeners
# from a Secret (a self-signed certificate made here with openssl; MQTT over
# TLS is checked against it). See run_render.py.
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
free_ports() { # N free TCP ports (closed again before use; fine on a test host)
	python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()' "$1"
}

# run NAME [SECRET=DIR...] -- [helm args...]: render with free ports, run it.
run() {
	local name="$1"; shift
	local secrets=()
	while [ "$1" != "--" ]; do secrets+=("$1"); shift; done
	shift
	local port
	read -r -a port < <(free_ports 10)
	mkdir -p "$work/$name"
	"$helm" template hawser "$chart" -n hawser-e2e \
		--set edge.ports.mqtt="${port[0]}",edge.service.ports.mqtt="${port[0]}" \
		--set edge.ports.ws="${port[1]}",edge.service.ports.ws="${port[1]}",edge.ports.http="${port[2]}",edge.ports.inbox="${port[3]}" \
		--set broker.ports.inbox="${port[4]}",broker.ports.http="${port[5]}" \
		--set router.ports.inbox="${port[6]}",router.ports.http="${port[7]}" \
		--set edge.ports.mqtts="${port[8]}",edge.ports.wss="${port[9]}" \
		--set edge.config.drain_timeout_ms=3000,tests.timeoutSeconds=15 \
		"$@" >"$work/$name/render.yaml"
	echo "[e2e] $name"
	"$py" "$root/tests/deploy/run_render.py" "$work/$name/render.yaml" "$bindir" "$work/$name" \
		"${secrets[@]}" | sed "s/^\(ok\|FAIL\): /\1: $name: /" | tee -a "$work/out"
	[ "${PIPESTATUS[0]}" -eq 0 ]
}

rc=0
: >"$work/out"
run default -- || rc=1

# TLS listeners from a kubernetes.io/tls Secret (self-signed CA + server cert).
tls="$work/secret-tls"
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=hawser-test-ca \
	-keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
	-keyout "$tls/tls.key" -out "$tls/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/ext.cnf"
openssl x509 -req -in "$tls/tls.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
	-days 2 -extfile "$tls/ext.cnf" -out "$tls/tls.crt" 2>/dev/null
run tls hawser-tls="$tls" -- --set tls.enabled=true,tls.existingSecret=hawser-tls,tls.ca=true || rc=1

n_ok=$(grep -c '^ok:' "$work/out" || true)
n_fail=$(grep -c '^FAIL:' "$work/out" || true)
if [ "$rc" -ne 0 ] && [ "$n_fail" -eq 0 ]; then n_fail=1; fi
printf '%d passed, %d failed\n' "$n_ok" "$n_fail"
exit "$rc"
