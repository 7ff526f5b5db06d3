#!/usr/bin/env bash
# bench/run.sh: build, then run the benchmark scenarios against Mosquitto and
# Hawser (all-in-one, split tiers, Redis session store, Kafka pipeline) on
# this machine, print a table with the ratio of each Hawser target to
# Mosquitto and write bench/results/latest.json. See bench/README.md.
#
#   bash bench/run.sh --all   every target and scenario, 15 s per run, the
#                             fixed-load ones 3 times (about 30 min on 2
#                             cores), then bench/results/*.png and the
#                             results section of bench/README.md
#   bash bench/run.sh         the knobs below (default: mosquitto and the
#                             all-in-one, every scenario over TCP)
#
# Every target runs pinned to TARGET_CPU (all of its processes, and the
# redis-server / Kafka it uses), the load generator to LOADGEN_CPU; each
# scenario gets freshly started target processes so memory and CPU readings
# are not polluted by the previous one. Everything listens on 127.0.0.1 only.
#
# Sizes and rates come from the environment:
#   TARGETS="mosquitto hawser"  (also hawser-split hawser-redis hawser-kafka)
#   SCENARIOS="idle fanin fanout p2p p2p-max"  (also idle-ws: idle over
#                                               WebSocket whatever TRANSPORT;
#                                               fanin-max, fanout-max)
#   QOS="0 1"  MQTT=5  TRANSPORT=tcp|ws  SIZE=64  DURATION=10  DRAIN=3
#   REPEAT=1  (3 with --all: rounds of the idle and fixed-load scenarios
#              idle, idle-ws, fanin, fanout and p2p over every target; the
#              table shows each metric's median over the rounds and every
#              round's p99, or connects/s for idle)
#   IDLE_CONNS=10000  FANIN_PUBS=100  FANOUT_SUBS=1000  P2P_PAIRS=1000
#   FANIN_RATE=20000  FANOUT_RATE=50  P2P_RATE=20000  (publishes/s, total)
#   MAX_PAIRS=100 MAX_WINDOW=16   (p2p-max: closed loop, no rate limit;
#                                  fanin-max, fanout-max: the same window per
#                                  publisher, FANIN_PUBS / FANOUT_SUBS)
#   CONN_RATE=50000  TARGET_CPU=0  LOADGEN_CPU=1  BUILD_DIR=build-bench
#   REDIS_CPU=KAFKA_CPU=$TARGET_CPU  KAFKA_PARTITIONS=4
#   HAWSER_BIN=$BUILD_DIR/bin/hawser (hawser-edge, -broker, -router beside it)
#   MOSQUITTO_BIN=/usr/sbin/mosquitto  REDIS_BIN=redis-server
#   QUIET_PCT=15 QUIET_WAIT=30  (before each run, wait up to QUIET_WAIT s for
#                                the host to be at most QUIET_PCT % busy)
#   PLOTS=0|1 README=0|1  (1 with --all: write the plots / the README section)
#   BUILD=1  (0: measure the binaries already in BUILD_DIR, do not build)
#   BENCH_VENV=.cache/bench-venv  (matplotlib and confluent-kafka from PyPI)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KNOBS="TARGETS SCENARIOS QOS MQTT TRANSPORT SIZE DURATION DRAIN REPEAT IDLE_CONNS FANIN_PUBS
FANIN_RATE FANOUT_SUBS FANOUT_RATE P2P_PAIRS P2P_RATE MAX_PAIRS MAX_WINDOW CONN_RATE
TARGET_CPU LOADGEN_CPU REDIS_CPU KAFKA_CPU KAFKA_PARTITIONS BUILD_DIR HAWSER_BIN
MOSQUITTO_BIN REDIS_BIN QUIET_PCT QUIET_WAIT PLOTS README BENCH_VENV BUILD"

ALL=0
for arg in "$@"; do
	case $arg in
	--all) ALL=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "usage: bash bench/run.sh [--all] (knobs in the environment; --help)" >&2
		exit 2
		;;
	esac
done

# What the caller set, for the record (the exact command of the run).
OVERRIDES=""
for k in $KNOBS; do
	[[ -n ${!k+x} ]] && OVERRIDES+="$k=${!k@Q} "
done
COMMAND="${OVERRIDES}bash bench/run.sh${*:+ $*}"

if ((ALL)); then
	TARGETS=${TARGETS:-"mosquitto hawser hawser-split hawser-redis hawser-kafka"}
	SCENARIOS=${SCENARIOS:-"idle idle-ws fanin fanout p2p p2p-max fanin-max fanout-max"}
	DURATION=${DURATION:-15}
	REPEAT=${REPEAT:-3}
	PLOTS=${PLOTS:-1}
	README=${README:-1}
fi
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
TARGETS=${TARGETS:-"mosquitto hawser"}
SCENARIOS=${SCENARIOS:-"idle fanin fanout p2p p2p-max"}
QOS=${QOS:-"0 1"}
MQTT=${MQTT:-5}
TRANSPORT=${TRANSPORT:-tcp}
SIZE=${SIZE:-64}
DURATION=${DURATION:-10}
DRAIN=${DRAIN:-3}
REPEAT=${REPEAT:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
FANIN_PUBS=${FANIN_PUBS:-100}
FANOUT_SUBS=${FANOUT_SUBS:-1000}
P2P_PAIRS=${P2P_PAIRS:-1000}
FANIN_RATE=${FANIN_RATE:-20000}
FANOUT_RATE=${FANOUT_RATE:-50}
P2P_RATE=${P2P_RATE:-20000}
MAX_PAIRS=${MAX_PAIRS:-100}
MAX_WINDOW=${MAX_WINDOW:-16}
CONN_RATE=${CONN_RATE:-50000}
TARGET_CPU=${TARGET_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
REDIS_CPU=${REDIS_CPU:-$TARGET_CPU}
KAFKA_CPU=${KAFKA_CPU:-$TARGET_CPU}
KAFKA_PARTITIONS=${KAFKA_PARTITIONS:-4}
HAWSER_BIN=${HAWSER_BIN:-$BUILD_DIR/bin/hawser}
BIN_DIR=$(dirname "$HAWSER_BIN")
MOSQUITTO_BIN=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
REDIS_BIN=${REDIS_BIN:-$(command -v redis-server || echo /usr/bin/redis-server)}
QUIET_PCT=${QUIET_PCT:-15}
QUIET_WAIT=${QUIET_WAIT:-30}
PLOTS=${PLOTS:-0}
README=${README:-0}
BUILD=${BUILD:-1}
BENCH_VENV=${BENCH_VENV:-$ROOT/.cache/bench-venv}
LOADGEN=$BUILD_DIR/bin/loadgen
RESULTS_DIR=$ROOT/bench/results
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

WORK=$(mktemp -d /tmp/hawser-bench.XXXXXX)
LINES=$WORK/results.jsonl
PIDS=()       # the target's processes (split: edge, broker, router)
AUX_PIDS=()   # what the target uses and is measured apart (redis, kafka)
REDIS_PID=""
KAFKA_PID=""
KAFKA_BOOTSTRAP=""
KAFKA_FAILED=0
RUN_N=0
: >"$LINES"

log() { printf 'bench: %s\n' "$*" >&2; }

# kill_wait PID: SIGTERM, a bounded wait, then SIGKILL: a wedged process
# must not hang the run.
kill_wait() {
	kill "$1" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# stop_target stops the target's processes, the first started last (split:
# edge, broker, router), then its redis-server. Kafka outlives the runs.
stop_target() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill_wait "${PIDS[i]}"
	done
	PIDS=()
	if [[ -n $REDIS_PID ]]; then
		kill_wait "$REDIS_PID"
		REDIS_PID=""
	fi
	AUX_PIDS=()
}
kafka_stop() {
	if [[ -n $KAFKA_PID ]]; then
		HAWSER_KAFKA_DIR=$WORK/kafka bash "$ROOT/scripts/kafka.sh" stop >/dev/null 2>&1 || true
		kill -9 "$KAFKA_PID" 2>/dev/null || true
		KAFKA_PID=""
	fi
}
cleanup() { stop_target; kafka_stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() {
	local p
	for p in "${PIDS[@]}" ${REDIS_PID:+"$REDIS_PID"}; do
		kill -0 "$p" 2>/dev/null || return 1
	done
}

# wait_port PORT: true once something accepts on 127.0.0.1:PORT (10 s max).
wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		alive || return 1
		sleep 0.1
	done
	return 1
}

# probe PORT: true once a QoS 1 message published through the target comes
# back to a subscriber (60 s max): every tier is up and linked, and with
# Kafka the router's consumer has its partitions. The subscriber may come up
# after the first publishes, so publish until it has one.
probe() {
	local topic="bench/probe/$$/$RUN_N" sub rc=0
	mosquitto_sub -h 127.0.0.1 -p "$1" -t "$topic" -q 1 -C 1 -W 60 >/dev/null 2>&1 &
	sub=$!
	for _ in $(seq 300); do
		kill -0 "$sub" 2>/dev/null || break
		alive || break
		timeout 30 mosquitto_pub -h 127.0.0.1 -p "$1" -t "$topic" -q 1 -m probe >/dev/null 2>&1 || true
		sleep 0.2
	done
	kill "$sub" 2>/dev/null || true
	wait "$sub" || rc=$?
	return "$rc"
}

# spawn NAME CPU ARGV...: starts ARGV pinned to CPU, output to NAME.out,
# appended to PIDS.
spawn() {
	local name=$1 cpu=$2
	shift 2
	taskset -c "$cpu" "$@" >>"$WORK/$name.out" 2>&1 &
	PIDS+=($!)
}

# hawser_sets TIER...: the flags of the given tiers (edge, broker, router):
# MQTT and WebSocket listeners on MPORT/WSPORT, no HTTP listener but on
# HPORT for the tier written +TIER (the broker's counters are read there).
hawser_sets() {
	local t
	echo "--set log.level=warn"
	for t in "$@"; do
		if [[ $t == +* ]]; then
			t=${t#+}
			echo "--set $t.http_listen=127.0.0.1:$HPORT"
		else
			echo "--set $t.http_listen="
		fi
		[[ $t == edge ]] && echo "--set edge.mqtt_listen=127.0.0.1:$MPORT --set edge.ws_listen=127.0.0.1:$WSPORT"
	done
}

start_redis() {
	local port dir=$WORK/redis.$RUN_N
	port=$(free_port)
	mkdir -p "$dir"
	taskset -c "$REDIS_CPU" "$REDIS_BIN" --port "$port" --bind 127.0.0.1 --dir "$dir" \
	    --save "" --appendonly yes --appendfsync everysec --daemonize no \
	    --protected-mode no --logfile "" >>"$WORK/redis.out" 2>&1 &
	REDIS_PID=$!
	AUX_PIDS+=("$REDIS_PID")
	wait_port "$port" || return 1
	REDIS_URL="redis://127.0.0.1:$port/0"
}

# kafka_start: one Kafka (scripts/kafka.sh, KRaft, fresh run directory) for
# every hawser-kafka run, started unpinned (JVM startup is the slow part),
# then pinned with all its threads to KAFKA_CPU.
kafka_start() {
	[[ -n $KAFKA_PID ]] && return 0
	((KAFKA_FAILED)) && return 1 # once is enough: each try may take 90 s
	local out
	log "starting Kafka (scripts/kafka.sh)"
	if ! out=$(HAWSER_KAFKA_DIR=$WORK/kafka bash "$ROOT/scripts/kafka.sh" start); then
		KAFKA_FAILED=1
		return 1
	fi
	KAFKA_BOOTSTRAP=$(sed -n 's/^bootstrap=//p' <<<"$out" | tail -n 1)
	KAFKA_PID=$(cat "$WORK/kafka/pid")
	taskset -a -c -p "$KAFKA_CPU" "$KAFKA_PID" >/dev/null
}

# kafka_topic NAME: creates a topic (a fresh one per run, so a run never
# consumes what the previous one left).
kafka_topic() {
	"$BENCH_VENV/bin/python" - "$KAFKA_BOOTSTRAP" "$1" "$KAFKA_PARTITIONS" <<-'EOF'
		import sys
		from confluent_kafka.admin import AdminClient, NewTopic
		admin = AdminClient({"bootstrap.servers": sys.argv[1]})
		fs = admin.create_topics([NewTopic(sys.argv[2], num_partitions=int(sys.argv[3]),
		                                   replication_factor=1)], operation_timeout=30)
		for f in fs.values():
		    f.result(timeout=30)
	EOF
}

# start_target NAME: sets PIDS, AUX_PIDS, MPORT, WSPORT and HPORT; the target
# answers a probe when it returns true.
start_target() {
	local name=$1 r b e
	MPORT=$(free_port)
	WSPORT=$(free_port)
	HPORT=$(free_port)
	RUN_N=$((RUN_N + 1))
	case $name in
	mosquitto)
		cat >"$WORK/mosquitto.conf" <<-EOF
			per_listener_settings false
			allow_anonymous true
			persistence false
			set_tcp_nodelay true
			max_connections -1
			log_dest file $WORK/mosquitto.log
			log_type error
			log_type warning
			listener $MPORT 127.0.0.1
			listener $WSPORT 127.0.0.1
			protocol websockets
		EOF
		spawn mosquitto "$TARGET_CPU" "$MOSQUITTO_BIN" -c "$WORK/mosquitto.conf"
		;;
	hawser)
		# shellcheck disable=SC2046
		spawn hawser "$TARGET_CPU" "$HAWSER_BIN" $(hawser_sets +edge broker router)
		;;
	hawser-split)
		# One edge, one broker, one router over NNG on loopback TCP, all
		# on TARGET_CPU: the same core budget as Mosquitto.
		r=tcp://127.0.0.1:$(free_port)
		b=tcp://127.0.0.1:$(free_port)
		e=tcp://127.0.0.1:$(free_port)
		# shellcheck disable=SC2046
		spawn hawser-edge "$TARGET_CPU" "$BIN_DIR/hawser-edge" $(hawser_sets edge) \
		    --set node.id=bench-edge --set "edge.listen=$e" --set "edge.brokers=$b"
		# shellcheck disable=SC2046
		spawn hawser-broker "$TARGET_CPU" "$BIN_DIR/hawser-broker" $(hawser_sets +broker) \
		    --set node.id=bench-broker --set "broker.listen=$b" --set "broker.routers=$r"
		# shellcheck disable=SC2046
		spawn hawser-router "$TARGET_CPU" "$BIN_DIR/hawser-router" $(hawser_sets router) \
		    --set node.id=bench-router --set "router.listen=$r" --set "router.brokers=$b"
		;;
	hawser-redis)
		start_redis || { log "redis-server did not start"; tail -n 20 "$WORK/redis.out" >&2; return 1; }
		# shellcheck disable=SC2046
		spawn hawser-redis "$TARGET_CPU" "$HAWSER_BIN" $(hawser_sets +edge broker router) \
		    --set store.backend=redis --set "store.redis_url=$REDIS_URL"
		;;
	hawser-kafka)
		kafka_start || { log "Kafka did not start"; return 1; }
		AUX_PIDS=("$KAFKA_PID")
		kafka_topic "hawser-bench-$RUN_N" || { log "cannot create the Kafka topic"; return 1; }
		# Every topic through one publish_consume pipeline: publish →
		# Kafka (acks=all) → the router's consumer → subscribers.
		# shellcheck disable=SC2046
		spawn hawser-kafka "$TARGET_CPU" "$HAWSER_BIN" $(hawser_sets +edge broker router) \
		    --set router.mode=kafka --set "router.kafka.brokers=$KAFKA_BOOTSTRAP" \
		    --set "router.kafka.group=hawser-bench-$$-$RUN_N" \
		    --set "router.pipelines=[{\"name\":\"bench\",\"filter\":\"#\",\"mode\":\"publish_consume\",\"topic\":\"hawser-bench-$RUN_N\"}]"
		;;
	*)
		log "unknown target $name"
		return 1
		;;
	esac
	if ! wait_port "$MPORT" || ! wait_port "$WSPORT" || ! probe "$MPORT"; then
		log "$name did not start or does not deliver; its output:"
		tail -n 20 "$WORK"/*.out >&2 || true
		stop_target
		return 1
	fi
}

# busy_pct: percent of all cores busy over the next second (/proc/stat).
busy_pct() {
	local b0 t0 b1 t1
	local prog='/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}'
	read -r b0 t0 < <(awk "$prog" /proc/stat)
	sleep 1
	read -r b1 t1 < <(awk "$prog" /proc/stat)
	echo $(((t1 > t0) ? 100 * (b1 - b0) / (t1 - t0) : 0))
}

# wait_quiet: other work on the host skews every number, so wait (at most
# QUIET_WAIT seconds) until the host is below QUIET_PCT percent busy.
wait_quiet() {
	local deadline=$((SECONDS + QUIET_WAIT)) pct
	while :; do
		pct=$(busy_pct)
		((pct <= QUIET_PCT)) && return 0
		if ((SECONDS >= deadline)); then
			log "host still ${pct}% busy with other work; measuring anyway (see other processes CPU %)"
			return 0
		fi
	done
}

# run_one TARGET SCENARIO QOS TRANSPORT LOADGEN-ARGS...: one measurement,
# one line.
run_one() {
	local target=$1 scen=$2 qos=$3 transport=$4 line port pids dropped aux=()
	shift 4
	if ! start_target "$target"; then
		echo "{\"scenario\":\"$scen\",\"target\":\"$target\",\"qos\":$qos,\"transport\":\"$transport\",\"error\":\"target did not start\"}" >>"$LINES"
		return 0
	fi
	port=$MPORT
	[[ $transport == ws ]] && port=$WSPORT
	pids=$(IFS=,; echo "${PIDS[*]}")
	((${#AUX_PIDS[@]})) && aux=(--aux-pid "$(IFS=,; echo "${AUX_PIDS[*]}")")
	wait_quiet
	log "$target $scen qos=$qos $transport $*"
	# The loadgen bounds itself; timeout is only a guard against a bug.
	line=$(timeout 600 taskset -c "$LOADGEN_CPU" "$LOADGEN" -v --port "$port" --pid "$pids" \
	    "${aux[@]}" --target "$target" --transport "$transport" --mqtt "$MQTT" --qos "$qos" \
	    --size "$SIZE" --conn-rate "$CONN_RATE" --drain "$DRAIN" "$@" | tail -n 1) || true
	if ! alive; then
		log "$target exited during $scen"
		line=""
	fi
	# What the broker's queue bounds dropped (a slow subscriber's oldest
	# queued messages), to tell them from other losses; hawser only.
	dropped=""
	[[ $target == hawser* ]] && dropped=$(curl -s --max-time 5 "http://127.0.0.1:$HPORT/metrics" |
	    awk '$1 == "hawser_broker_queue_dropped_total" { print $2 }')
	stop_target
	if [[ -z $line ]]; then
		line="{\"scenario\":\"$scen\",\"target\":\"$target\",\"qos\":$qos,\"transport\":\"$transport\",\"error\":\"no result\"}"
	fi
	# Scenario names of the table, not of the loadgen (p2p-max is p2p).
	echo "$line" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
d["scenario"] = sys.argv[1]
if sys.argv[2].isdigit():
    d["queue_dropped"] = int(sys.argv[2])
d["round"] = int(sys.argv[3])
print(json.dumps(d))' "$scen" "$dropped" "$ROUND" >>"$LINES"
}

# kafka_warmup: a fresh JVM compiles its hot paths during the first
# thousands of records; push some through an unmeasured hawser-kafka first so
# the first measured run does not pay for it.
kafka_warmup() {
	start_target hawser-kafka || return 0
	log "hawser-kafka: warm-up (not measured)"
	timeout 60 taskset -c "$LOADGEN_CPU" "$LOADGEN" --port "$MPORT" --target warmup --qos 1 \
	    --scenario p2p --pairs 10 --rate 2000 --duration 5 >/dev/null 2>&1 || true
	stop_target
}

# bench_venv: the Python environment for plots and Kafka topics, made on
# first use from bench/requirements.txt (PyPI).
bench_venv() {
	local req=$ROOT/bench/requirements.txt
	if [[ ! -x $BENCH_VENV/bin/python || $req -nt $BENCH_VENV/.complete ]]; then
		log "setting up $BENCH_VENV (pip install -r bench/requirements.txt)"
		python3 -m venv "$BENCH_VENV" >&2 &&
		    "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check -r "$req" >&2 &&
		    touch "$BENCH_VENV/.complete"
	fi
}

# ---- build
if [[ ! -f $BUILD_DIR/build.ninja && ! -f $BUILD_DIR/Makefile ]]; then
	cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi
build_targets="loadgen"
[[ " $TARGETS " == *" hawser"* ]] && build_targets+=" hawser"
[[ " $TARGETS " == *" hawser-split "* ]] && build_targets+=" hawser-edge hawser-broker hawser-router"
# shellcheck disable=SC2086
if [[ $BUILD == 0 ]]; then
	log "BUILD=0: measuring the binaries in $BUILD_DIR as they are"
elif ! cmake --build "$BUILD_DIR" --target $build_targets >&2; then
	log "building Hawser failed; measuring the other targets only"
	cmake --build "$BUILD_DIR" --target loadgen >&2
	TARGETS=$(tr ' ' '\n' <<<"$TARGETS" | grep -v '^hawser' | tr '\n' ' ' || true)
fi
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
SANITIZER=$(sed -n 's/^HAWSER_SANITIZER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
ALLOCATOR=$(sed -n 's/^HAWSER_ALLOCATOR:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
[[ $BUILD_TYPE != Release ]] && log "warning: $BUILD_DIR is a '$BUILD_TYPE' build, not Release"
[[ -n $SANITIZER ]] && log "warning: $BUILD_DIR is built with HAWSER_SANITIZER=$SANITIZER"
drop_target() {
	log "$2; skipping $1"
	TARGETS=$(tr ' ' '\n' <<<"$TARGETS" | grep -vx "$1" | tr '\n' ' ' || true)
}
[[ " $TARGETS " == *" mosquitto "* && ! -x $MOSQUITTO_BIN ]] &&
    drop_target mosquitto "no $MOSQUITTO_BIN (apt-get install mosquitto)"
[[ " $TARGETS " == *" hawser-redis "* && ! -x $REDIS_BIN ]] &&
    drop_target hawser-redis "no $REDIS_BIN (apt-get install redis-server)"
command -v mosquitto_sub >/dev/null || {
	log "mosquitto_sub/mosquitto_pub are needed to probe targets (apt-get install mosquitto-clients)"
	exit 1
}
if [[ " $TARGETS " == *" hawser-kafka "* ]] && ! { command -v java && command -v mvn; } >/dev/null; then
	drop_target hawser-kafka "Kafka needs java and mvn (apt-get install openjdk-17-jre-headless maven)"
fi
if [[ " $TARGETS " == *" hawser-kafka "* || $PLOTS == 1 ]] && ! bench_venv; then
	log "cannot set up $BENCH_VENV"
	PLOTS=0
	[[ " $TARGETS " == *" hawser-kafka "* ]] && drop_target hawser-kafka "no confluent-kafka to create topics"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- scenarios, target by target (Kafka runs only while its target does)
# Rounds: the first runs every scenario; the others repeat the fixed-load
# and idle ones, over every target again, so each round sees Mosquitto and
# Hawser under about the same host conditions. (A connect phase is 0.3 s:
# one round's connects/s swung by ±15 % between runs.)
for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
	for target in $TARGETS; do
		[[ $target == hawser-kafka ]] && kafka_warmup
		for scen in $SCENARIOS; do
			((ROUND > 1)) && [[ $scen == *-max ]] && continue
			case $scen in
			idle)
				run_one "$target" idle 0 "$TRANSPORT" --scenario idle --conns "$IDLE_CONNS" --hold 3
				;;
			idle-ws)
				run_one "$target" idle-ws 0 ws --scenario idle --conns "$IDLE_CONNS" --hold 3
				;;
			fanin)
				for q in $QOS; do
					run_one "$target" fanin "$q" "$TRANSPORT" --scenario fanin --pubs "$FANIN_PUBS" \
					    --rate "$FANIN_RATE" --duration "$DURATION"
				done
				;;
			fanout)
				for q in $QOS; do
					run_one "$target" fanout "$q" "$TRANSPORT" --scenario fanout --subs "$FANOUT_SUBS" \
					    --rate "$FANOUT_RATE" --duration "$DURATION"
				done
				;;
			p2p)
				for q in $QOS; do
					run_one "$target" p2p "$q" "$TRANSPORT" --scenario p2p --pairs "$P2P_PAIRS" \
					    --rate "$P2P_RATE" --duration "$DURATION"
				done
				;;
			p2p-max)
				for q in $QOS; do
					run_one "$target" p2p-max "$q" "$TRANSPORT" --scenario p2p --pairs "$MAX_PAIRS" \
					    --rate 0 --window "$MAX_WINDOW" --duration "$DURATION"
				done
				;;
			fanin-max)
				# QoS 0 only: a QoS 1 publisher's window closes on PUBACK,
				# which comes before the one subscriber takes the message,
				# so a QoS 1 closed loop measures the queue bound's drops.
				if [[ " $QOS " == *" 0 "* ]]; then
					run_one "$target" fanin-max 0 "$TRANSPORT" --scenario fanin --pubs "$FANIN_PUBS" \
					    --rate 0 --window "$MAX_WINDOW" --duration "$DURATION"
				fi
				;;
			fanout-max)
				for q in $QOS; do
					run_one "$target" fanout-max "$q" "$TRANSPORT" --scenario fanout --subs "$FANOUT_SUBS" \
					    --rate 0 --window "$MAX_WINDOW" --duration "$DURATION"
				done
				;;
			*)
				log "unknown scenario $scen"
				;;
			esac
		done
	done
done
kafka_stop

# ---- report
mkdir -p "$RESULTS_DIR"
{
	echo "command=$COMMAND"
	echo "started=$STARTED"
	echo "loadavg_start=$LOADAVG_START"
	echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
	echo "dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
	echo "build_dir=$BUILD_DIR"
	echo "build_type=$BUILD_TYPE"
	echo "sanitizer=$SANITIZER"
	echo "allocator=$ALLOCATOR"
	echo "mosquitto=$("$MOSQUITTO_BIN" -h 2>/dev/null | sed -n '1s/^mosquitto version //p' || true)"
	echo "redis=$("$REDIS_BIN" --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p' || true)"
	echo "kafka=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/tests/kafka/pom.xml" 2>/dev/null || true)"
	for k in $KNOBS; do
		echo "knob.$k=${!k}"
	done
} >"$WORK/meta.env"
python3 "$ROOT/bench/report.py" --lines "$LINES" --meta "$WORK/meta.env" \
    --out "$RESULTS_DIR/latest.json"
if [[ $PLOTS == 1 ]]; then
	"$BENCH_VENV/bin/python" "$ROOT/bench/plot.py" "$RESULTS_DIR/latest.json" "$RESULTS_DIR" ||
	    log "plotting failed"
fi
if [[ $README == 1 ]]; then
	python3 "$ROOT/bench/report.py" --from "$RESULTS_DIR/latest.json" --readme "$ROOT/bench/README.md"
	log "updated the results section of bench/README.md"
fi
