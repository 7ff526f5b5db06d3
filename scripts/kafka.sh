#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft) for tests and local development.
#
#   scripts/kafka.sh start    fetch Kafka if needed, format, start, wait until
#                             it answers a metadata request; prints
#                             "bootstrap=127.0.0.1:<port>" last
#   scripts/kafka.sh stop     stop it (SIGTERM, SIGKILL after 20 s); data kept
#   scripts/kafka.sh status   exit 0 and print the bootstrap address if it
#                             answers, exit 1 otherwise
#   scripts/kafka.sh fetch    only fetch Kafka into the cache
#
# Kafka (org.apache.kafka:kafka_2.13, the version in tests/kafka/pom.xml) and
# its runtime dependencies come from Maven Central through
# `mvn dependency:copy-dependencies` into $HAWSER_KAFKA_CACHE (default
# .cache/kafka, git-ignored), reused when present. Needs java (17+) and mvn.
#
# Environment:
#   HAWSER_KAFKA_DIR     run directory: data, logs, pid, ports
#                        (default .cache/kafka/run); one Kafka per directory
#   HAWSER_KAFKA_CACHE   where jars and the readiness tool go (.cache/kafka)
#   HAWSER_KAFKA_PORT    client port (default: a free port, kept across
#                        stop/start of the same run directory)
#   HAWSER_KAFKA_HEAP    JVM heap (default 512m)
#   HAWSER_KAFKA_TIMEOUT seconds to wait for readiness (default 90)
#
# Everything listens on 127.0.0.1 only: the client listener on the port
# above, the KRaft controller on a second free port.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HAWSER_KAFKA_CACHE:-$root/.cache/kafka}"
run="${HAWSER_KAFKA_DIR:-$cache/run}"
heap="${HAWSER_KAFKA_HEAP:-512m}"
timeout_s="${HAWSER_KAFKA_TIMEOUT:-90}"
pom="$root/tests/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
libs="$cache/libs-$version"
ready_tool="$cache/kafka_ready"

say() { printf '[kafka] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# free_port prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

fetch() {
	if [ -f "$libs/.complete" ]; then
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || die "mvn not found (Debian: apt-get install maven)"
	command -v java >/dev/null 2>&1 || die "java not found (Debian: apt-get install openjdk-17-jre-headless)"
	say "fetching Kafka $version from Maven Central into $libs"
	rm -rf "$libs.tmp"
	mkdir -p "$cache"
	if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
		-DoutputDirectory="$libs.tmp" -Dmaven.repo.local="$cache/m2" >"$cache/fetch.log" 2>&1; then
		cat "$cache/fetch.log" >&2
		die "mvn dependency:copy-dependencies failed"
	fi
	touch "$libs.tmp/.complete"
	rm -rf "$libs"
	mv "$libs.tmp" "$libs"
}

build_ready_tool() {
	local src="$root/tests/kafka/kafka_ready.c"
	if [ -x "$ready_tool" ] && [ "$ready_tool" -nt "$src" ]; then
		return 0
	fi
	mkdir -p "$cache"
	cc -O1 -o "$ready_tool.tmp" "$src" $(pkg-config --cflags --libs rdkafka) ||
		die "cannot build the readiness tool (needs librdkafka-dev)"
	mv "$ready_tool.tmp" "$ready_tool"
}

bootstrap() { echo "127.0.0.1:$(cat "$run/port")"; }

running() {
	[ -f "$run/pid" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null
}

start() {
	fetch
	build_ready_tool
	mkdir -p "$run"
	if running; then
		if "$ready_tool" "$(bootstrap)" 2000; then
			echo "bootstrap=$(bootstrap)"
			return 0
		fi
		die "a Kafka (pid $(cat "$run/pid")) runs in $run but does not answer"
	fi
	if [ -n "${HAWSER_KAFKA_PORT:-}" ]; then
		echo "$HAWSER_KAFKA_PORT" >"$run/port"
	elif [ ! -f "$run/port" ]; then
		free_port >"$run/port"
	fi
	[ -f "$run/controller_port" ] || free_port >"$run/controller_port"
	local port cport
	port="$(cat "$run/port")"
	cport="$(cat "$run/controller_port")"
	[ "$port" != "$cport" ] || { free_port >"$run/controller_port"; cport="$(cat "$run/controller_port")"; }
	sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@DATA_DIR@|$run/data|g" \
		"$root/tests/kafka/server.properties.in" >"$run/server.properties"

	local jvm=(java -Xms128m "-Xmx$heap" -XX:+UseSerialGC -XX:TieredStopAtLevel=1
		-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
		"-Dlog4j.configuration=file:$root/tests/kafka/log4j.properties"
		"-Dkafka.log.dir=$run" -cp "$libs/*")
	if [ ! -f "$run/data/meta.properties" ]; then
		local id
		id="$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
		"${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$run/server.properties" \
			>"$run/format.log" 2>&1 || { cat "$run/format.log" >&2; die "formatting $run/data failed"; }
	fi
	local t0=$SECONDS
	nohup "${jvm[@]}" kafka.Kafka "$run/server.properties" >"$run/stdout.log" 2>&1 </dev/null &
	echo $! >"$run/pid"
	say "started pid $! on 127.0.0.1:$port (controller $cport), waiting up to ${timeout_s}s"
	if ! "$ready_tool" "127.0.0.1:$port" $((timeout_s * 1000)); then
		tail -n 30 "$run/stdout.log" "$run/server.log" >&2 2>/dev/null || true
		stop || true
		die "Kafka did not answer within ${timeout_s}s"
	fi
	say "ready after $((SECONDS - t0))s"
	echo "bootstrap=127.0.0.1:$port"
}

stop() {
	if ! running; then
		rm -f "$run/pid"
		return 0
	fi
	local pid
	pid="$(cat "$run/pid")"
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "pid $pid still running after 20 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$run/pid"
	say "stopped"
}

status() {
	build_ready_tool
	if running && "$ready_tool" "$(bootstrap)" 2000; then
		echo "bootstrap=$(bootstrap)"
		return 0
	fi
	say "not running in $run"
	return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
fetch) fetch; echo "$libs" ;;
*) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
