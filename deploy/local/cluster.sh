#!/usr/bin/env bash
# A local multi-process Hawser cluster on loopback, for development and tests.
#
#   deploy/local/cluster.sh start [-e N] [-b M] [-r K] [--redis] [--kafka]
#                                 [--set KEY=VALUE]...
#       N edges (default 2), M brokers (2), K routers (1), and when asked a
#       redis-server (session store) and a single-node Kafka
#       (scripts/kafka.sh; routers in kafka mode with one publish_consume
#       pipeline for topics kafka/#). Every process gets its own YAML under
#       the run directory with the configuration keys the Helm chart renders
#       (edge.*_listen, edge.listen, edge.brokers, broker.listen,
#       broker.routers, broker.peers, router.brokers, store.*, router.kafka.*), then --set
#       flags apply to every process. Waits until each is ready, prints the
#       endpoints, exits non-zero (and stops what it started) on failure.
#   deploy/local/cluster.sh stop
#       SIGTERM to every process (edges first: they drain), SIGKILL after
#       HAWSER_CLUSTER_STOP_TIMEOUT seconds (default 20), then Redis, Kafka.
#   deploy/local/cluster.sh status
#       Prints each process as running or dead and the endpoints; exit 0 only
#       if every process runs.
#
# Environment:
#   HAWSER_CLUSTER_DIR   run directory: YAML, logs, pid files, endpoints
#                        (default .cache/cluster); one cluster per directory
#   HAWSER_BIN_DIR       the binaries (default build/bin)
#   HAWSER_CLUSTER_TIMEOUT seconds to wait for each process (default 20)
#
# Every port is a free loopback port picked at start; `endpoints` in the run
# directory lists them (also printed by start and status).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run="${HAWSER_CLUSTER_DIR:-$root/.cache/cluster}"
bin="${HAWSER_BIN_DIR:-$root/build/bin}"
timeout_s="${HAWSER_CLUSTER_TIMEOUT:-20}"
stop_timeout_s="${HAWSER_CLUSTER_STOP_TIMEOUT:-20}"

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

usage() {
	sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# free_ports N prints N distinct TCP ports free on 127.0.0.1 right now.
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# procs lists the process names of the run directory in stop order.
procs() {
	local kind f
	for kind in edge broker router; do
		for f in "$run"/"$kind"-*.pid; do
			[ -e "$f" ] && basename "$f" .pid
		done
	done
	return 0
}

# wait_ready NAME LOG ID: waits for the JSON log line with "id":"ID".
wait_ready() {
	local name="$1" log="$2" id="$3" deadline=$((SECONDS + timeout_s))
	while :; do
		if grep -q "\"id\":\"$id\"" "$log" 2>/dev/null; then
			return 0
		fi
		if ! alive "$run/$name.pid"; then
			tail -n 20 "$log" >&2 || true
			die "$name exited during startup (log: $log)"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail -n 20 "$log" >&2 || true
			die "$name not ready after ${timeout_s}s (log: $log)"
		fi
		# Polls the log file; the process itself is not waited on here.
		sleep 0.05
	done
}

# spawn NAME BINARY: starts BINARY -c NAME.yaml in its own session. The
# binaries refuse unknown HAWSER_* variables, so this script's own (and the
# test tools') are taken out of their environment; HAWSER_<KEY> config
# overrides pass through.
spawn() {
	local name="$1" exe="$2" v unset=()
	shift 2
	for v in $(compgen -e); do
		case "$v" in
		HAWSER_CLUSTER_*|HAWSER_BIN_DIR|HAWSER_KAFKA_*|HAWSER_TEST_*) unset+=(-u "$v") ;;
		esac
	done
	setsid env "${unset[@]+"${unset[@]}"}" "$exe" -c "$run/$name.yaml" "$@" </dev/null \
		>"$run/$name.log" 2>&1 &
	echo $! >"$run/$name.pid"
}

yaml_list() {
	local item
	for item in "$@"; do
		printf '    - "%s"\n' "$item"
	done
}

cmd_start() {
	local edges=2 brokers=2 routers=1 redis=0 kafka=0 sets=()
	while [ $# -gt 0 ]; do
		case "$1" in
		-e) edges="$2"; shift 2 ;;
		-b) brokers="$2"; shift 2 ;;
		-r) routers="$2"; shift 2 ;;
		--redis) redis=1; shift ;;
		--kafka) kafka=1; shift ;;
		--set) sets+=(--set "$2"); shift 2 ;;
		-h|--help) usage; exit 0 ;;
		*) die "unknown option $1 (see --help)" ;;
		esac
	done
	for n in "$edges" "$brokers" "$routers"; do
		[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "-e/-b/-r need a positive number"
	done
	for b in hawser-edge hawser-broker hawser-router; do
		[ -x "$bin/$b" ] || die "$bin/$b missing: run scripts/build.sh (or set HAWSER_BIN_DIR)"
	done
	mkdir -p "$run"
	for name in $(procs); do
		alive "$run/$name.pid" && die "a cluster is running in $run: deploy/local/cluster.sh stop first"
	done
	rm -f "$run"/*.pid "$run"/*.yaml "$run"/*.log "$run/endpoints"
	trap 'say "start failed: stopping what was started"; cmd_stop >/dev/null 2>&1 || true' EXIT

	local ports i=0 broker_urls=() router_urls=() store="" router_extra=""
	read -r -a ports <<<"$(free_ports $((routers * 2 + brokers * 2 + edges * 4 + 1)))"
	next_port() { port="${ports[$i]}"; i=$((i + 1)); }
	local port
	for ((k = 1; k <= routers; k++)); do next_port; router_urls+=("tcp://127.0.0.1:$port"); done
	for ((k = 1; k <= brokers; k++)); do next_port; broker_urls+=("tcp://127.0.0.1:$port"); done

	store="store:
  backend: memory"
	if [ "$redis" = 1 ]; then
		command -v redis-server >/dev/null || die "redis-server not found (Debian: apt-get install redis-server)"
		next_port
		redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
			--daemonize yes --pidfile "$run/redis.pidfile" --dir "$run" \
			--logfile "$run/redis.log" >/dev/null
		local deadline=$((SECONDS + timeout_s))
		until redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; do
			[ "$SECONDS" -lt "$deadline" ] || die "redis-server not answering on port $port"
			sleep 0.05
		done
		echo "$port" >"$run/redis.port"
		store="store:
  backend: redis
  redis_url: \"redis://127.0.0.1:$port/0\""
		echo "redis=redis://127.0.0.1:$port/0" >>"$run/endpoints"
	fi
	if [ "$kafka" = 1 ]; then
		local out bootstrap
		out="$(HAWSER_KAFKA_DIR="$run/kafka" bash "$root/scripts/kafka.sh" start)" ||
			die "scripts/kafka.sh start failed"
		bootstrap="$(sed -n 's/^bootstrap=//p' <<<"$out" | tail -1)"
		[ -n "$bootstrap" ] || die "scripts/kafka.sh printed no bootstrap address"
		touch "$run/kafka.started"
		router_extra="  mode: kafka
  kafka:
    brokers: \"$bootstrap\"
    group: hawser-local
  pipelines:
    - {name: local, filter: \"kafka/#\", mode: publish_consume, topic: hawser-local}"
		echo "kafka=$bootstrap" >>"$run/endpoints"
	fi

	for ((k = 1; k <= routers; k++)); do
		local name="router-$k" http
		next_port; http="$port"
		cat >"$run/$name.yaml" <<EOF
node:
  id: $name
log:
  level: info
router:
  listen: "${router_urls[$((k - 1))]}"
  http_listen: "127.0.0.1:$http"
  brokers:
$(yaml_list "${broker_urls[@]}")
$router_extra
$store
EOF
		spawn "$name" "$bin/hawser-router" "${sets[@]+"${sets[@]}"}"
		echo "$name inbox=${router_urls[$((k - 1))]} http=http://127.0.0.1:$http" >>"$run/endpoints"
	done
	for ((k = 1; k <= brokers; k++)); do
		local name="broker-$k" http
		next_port; http="$port"
		cat >"$run/$name.yaml" <<EOF
node:
  id: $name
log:
  level: info
broker:
  listen: "${broker_urls[$((k - 1))]}"
  http_listen: "127.0.0.1:$http"
  routers:
$(yaml_list "${router_urls[@]}")
  peers:
$(yaml_list "${broker_urls[@]}")
$store
EOF
		spawn "$name" "$bin/hawser-broker" "${sets[@]+"${sets[@]}"}"
		echo "$name inbox=${broker_urls[$((k - 1))]} http=http://127.0.0.1:$http" >>"$run/endpoints"
	done
	for ((k = 1; k <= edges; k++)); do
		local name="edge-$k" mqtt ws http inbox
		next_port; mqtt="$port"; next_port; ws="$port"; next_port; http="$port"; next_port; inbox="$port"
		cat >"$run/$name.yaml" <<EOF
node:
  id: $name
log:
  level: info
edge:
  mqtt_listen: "127.0.0.1:$mqtt"
  ws_listen: "127.0.0.1:$ws"
  http_listen: "127.0.0.1:$http"
  listen: "tcp://127.0.0.1:$inbox"
  brokers:
$(yaml_list "${broker_urls[@]}")
  drain_timeout_ms: 10000
$store
EOF
		spawn "$name" "$bin/hawser-edge" "${sets[@]+"${sets[@]}"}"
		echo "$name mqtt=mqtt://127.0.0.1:$mqtt ws=ws://127.0.0.1:$ws/mqtt http=http://127.0.0.1:$http" >>"$run/endpoints"
	done

	for ((k = 1; k <= routers; k++)); do wait_ready "router-$k" "$run/router-$k.log" RTR-READY; done
	for ((k = 1; k <= brokers; k++)); do wait_ready "broker-$k" "$run/broker-$k.log" BRK-READY; done
	for ((k = 1; k <= edges; k++)); do wait_ready "edge-$k" "$run/edge-$k.log" EDGE-READY; done
	trap - EXIT
	say "started $edges edge(s), $brokers broker(s), $routers router(s) in $run"
	cat "$run/endpoints"
}

# stop_group NAME=PIDFILE...: SIGTERM to all at once, wait for each,
# SIGKILL what is still running after the stop timeout.
stop_group() {
	local arg name f pid deadline=$((SECONDS + stop_timeout_s)) names=() pids=()
	for arg in "$@"; do
		name="${arg%%=*}"
		f="${arg#*=}"
		if alive "$f"; then
			pid="$(cat "$f")"
			kill -TERM "$pid" 2>/dev/null || true
			names+=("$name")
			pids+=("$pid")
		fi
		rm -f "$f"
	done
	for k in "${!pids[@]}"; do
		pid="${pids[$k]}"
		while kill -0 "$pid" 2>/dev/null; do
			if [ "$SECONDS" -ge "$deadline" ]; then
				say "${names[$k]} (pid $pid) ignored SIGTERM for ${stop_timeout_s}s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.05
		done
		say "stopped ${names[$k]}"
	done
}

# cmd_stop stops the tiers in order: edges (they drain their clients),
# brokers, routers, then Redis and Kafka.
cmd_stop() {
	local kind f group
	[ -d "$run" ] || { say "nothing to stop in $run"; return 0; }
	for kind in edge broker router; do
		group=()
		for f in "$run"/"$kind"-*.pid; do
			[ -e "$f" ] && group+=("$(basename "$f" .pid)=$f")
		done
		[ "${#group[@]}" -eq 0 ] || stop_group "${group[@]}"
	done
	if [ -f "$run/redis.pidfile" ]; then
		stop_group "redis=$run/redis.pidfile"
	fi
	if [ -f "$run/kafka.started" ]; then
		HAWSER_KAFKA_DIR="$run/kafka" bash "$root/scripts/kafka.sh" stop || true
		rm -f "$run/kafka.started"
	fi
	return 0
}

cmd_status() {
	local name rc=0 any=0
	for name in $(procs); do
		any=1
		if alive "$run/$name.pid"; then
			echo "$name running (pid $(cat "$run/$name.pid"))"
		else
			echo "$name dead (log: $run/$name.log)"
			rc=1
		fi
	done
	if [ -f "$run/redis.pidfile" ]; then
		if alive "$run/redis.pidfile"; then echo "redis running"; else echo "redis dead"; rc=1; fi
	fi
	if [ -f "$run/kafka.started" ]; then
		if HAWSER_KAFKA_DIR="$run/kafka" bash "$root/scripts/kafka.sh" status >/dev/null 2>&1; then
			echo "kafka running"
		else
			echo "kafka dead"
			rc=1
		fi
	fi
	if [ "$any" = 0 ]; then
		echo "no cluster in $run"
		return 1
	fi
	cat "$run/endpoints" 2>/dev/null || true
	return "$rc"
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h|--help|help) usage ;;
*) usage >&2; exit 2 ;;
esac
