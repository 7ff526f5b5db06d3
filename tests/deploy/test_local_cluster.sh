#!/usr/bin/env bash
# test_local_cluster.sh: deploy/local/cluster.sh starts 2 edges, 2 brokers
# and 1 router on loopback, every generated YAML passes --check-config, a
# QoS 1 retained message published through edge-1 reaches a subscriber on
# edge-2 (retained, so the subscriber needs no timing), and stop ends every
# process cleanly (edges log EDGE-STOPPED: they drained, not killed).
#
#   HAWSER_BIN_DIR  directory with hawser-edge/-broker/-router (default
#                   build/bin if complete, else built into build-deploy/)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="$root/deploy/local/cluster.sh"
n_ok=0
n_fail=0
ok() { echo "ok: $*"; n_ok=$((n_ok + 1)); }
bad() { echo "FAIL: $*"; n_fail=$((n_fail + 1)); }
finish() { printf '%d passed, %d failed\n' "$n_ok" "$n_fail"; [ "$n_fail" -eq 0 ]; exit $?; }

command -v mosquitto_pub >/dev/null || { bad "mosquitto-clients not installed"; finish; }
bins=(hawser-edge hawser-broker hawser-router)
have_all() { local b; for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done; }
bindir="${HAWSER_BIN_DIR:-}"
if [ -z "$bindir" ]; then
	if have_all "$root/build/bin"; then
		bindir="$root/build/bin"
	else
		bindir="$root/build-deploy/bin"
		cmake -S "$root" -B "$root/build-deploy" -G Ninja -DHAWSER_TESTS=OFF >/dev/null &&
			cmake --build "$root/build-deploy" --target "${bins[@]}" >/dev/null
	fi
fi
have_all "$bindir" || { bad "binaries missing in $bindir"; finish; }

run="$(mktemp -d)"
export HAWSER_BIN_DIR="$bindir" HAWSER_CLUSTER_DIR="$run"
cleanup() { bash "$cluster" stop >/dev/null 2>&1; rm -rf "$run"; }
trap cleanup EXIT

if out="$(bash "$cluster" start -e 2 -b 2 -r 1 2>&1)"; then
	ok "start -e 2 -b 2 -r 1"
else
	bad "start failed:"; printf '%s\n' "$out"; finish
fi
printf '%s\n' "$out"
port_of() { sed -n "s|^$1 mqtt=mqtt://127.0.0.1:\([0-9]*\) .*|\1|p" "$run/endpoints"; }
p1="$(port_of edge-1)"
p2="$(port_of edge-2)"
if [ -n "$p1" ] && [ -n "$p2" ] && [ "$(grep -c '^edge-' <<<"$out")" -eq 2 ] &&
	[ "$(grep -c '^broker-' <<<"$out")" -eq 2 ] && [ "$(grep -c '^router-' <<<"$out")" -eq 1 ]; then
	ok "start printed the endpoints of 2 edges, 2 brokers, 1 router"
else
	bad "endpoints missing from the start output"
fi

if st="$(bash "$cluster" status)" && [ "$(grep -c ' running ' <<<"$st")" -eq 5 ]; then
	ok "status: 5 processes running"
else
	bad "status:"; printf '%s\n' "$st"
fi

cfg_ok=1
for y in edge-1:hawser-edge edge-2:hawser-edge broker-1:hawser-broker broker-2:hawser-broker router-1:hawser-router; do
	name="${y%%:*}"
	exe="${y#*:}"
	if ! r="$(env -u HAWSER_BIN_DIR -u HAWSER_CLUSTER_DIR "$bindir/$exe" -c "$run/$name.yaml" --check-config 2>&1)" ||
		! grep -q "config ok" <<<"$r"; then
		bad "$name.yaml: $r"
		cfg_ok=0
	fi
done
# The edges route to both brokers, the brokers to the router, and each
# broker knows the broker set (its peers, itself included).
if grep -q "$(sed -n 's/^broker-2 inbox=\([^ ]*\).*/\1/p' "$run/endpoints")" "$run/edge-1.yaml" &&
	grep -q "$(sed -n 's/^router-1 inbox=\([^ ]*\).*/\1/p' "$run/endpoints")" "$run/broker-2.yaml" &&
	grep -q "$(sed -n 's/^broker-1 inbox=\([^ ]*\).*/\1/p' "$run/endpoints")" "$run/broker-2.yaml"; then
	:
else
	bad "edge-1.yaml does not list broker-2, or broker-2.yaml not router-1 and broker-1"
	cfg_ok=0
fi
[ "$cfg_ok" = 1 ] && ok "every generated YAML passes --check-config and names its peers"

topic="cluster/$$"
if timeout 15 mosquitto_pub -p "$p1" -i "cl-pub-$$" -t "$topic" -m "across-edges" -q 1 -r &&
	got="$(timeout 15 mosquitto_sub -p "$p2" -i "cl-sub-$$" -t "$topic" -q 1 -C 1 -W 10)" &&
	[ "$got" = "across-edges" ]; then
	ok "retained QoS 1 message from edge-1 received on edge-2"
else
	bad "round trip across edges: got '${got:-}'"
fi

pids=()
for f in "$run"/*.pid; do pids+=("$(cat "$f")"); done
if stop_out="$(bash "$cluster" stop 2>&1)"; then
	left=0
	for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=$((left + 1)); done
	if [ "$left" -eq 0 ] && [ "${#pids[@]}" -eq 5 ]; then
		ok "stop: all 5 processes gone"
	else
		bad "stop: $left of ${#pids[@]} processes still running"
	fi
else
	bad "stop exited non-zero"
fi
printf '%s\n' "$stop_out"

if grep -q '"id":"EDGE-STOPPED"' "$run/edge-1.log" && grep -q '"id":"EDGE-STOPPED"' "$run/edge-2.log" &&
	! grep -q SIGKILL <<<"$stop_out"; then
	ok "every process stopped on SIGTERM (edges drained: EDGE-STOPPED)"
else
	bad "an edge did not log EDGE-STOPPED, or a process needed SIGKILL"
fi
if bash "$cluster" status >/dev/null 2>&1; then
	bad "status exits 0 after stop"
else
	ok "status reports no running cluster after stop"
fi
finish
