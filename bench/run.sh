#!/usr/bin/env bash
# bench/run.sh: build, then run the benchmark scenarios against Mosquitto and
# the Hawser all-in-one binary on this machine, print a table with the ratio
# Hawser/Mosquitto and write bench/results/latest.json. See bench/README.md.
#
# Every target runs pinned to TARGET_CPU, the load generator to LOADGEN_CPU;
# each scenario gets a freshly started target so memory and CPU readings are
# not polluted by the previous one. Everything listens on 127.0.0.1 only.
#
# Sizes and rates come from the environment (defaults finish in a few
# minutes on two cores):
#   TARGETS="mosquitto hawser"   SCENARIOS="idle fanin fanout p2p p2p-max"
#   QOS="0 1"  MQTT=5  TRANSPORT=tcp|ws  SIZE=64  DURATION=10
#   IDLE_CONNS=10000  FANIN_PUBS=100  FANOUT_SUBS=1000  P2P_PAIRS=1000
#   FANIN_RATE=20000  FANOUT_RATE=50  P2P_RATE=20000  (publishes/s, total)
#   MAX_PAIRS=100 MAX_WINDOW=16   (p2p-max: closed loop, no rate limit)
#   CONN_RATE=20000  TARGET_CPU=0  LOADGEN_CPU=1  BUILD_DIR=build
#   HAWSER_BIN=$BUILD_DIR/bin/hawser  MOSQUITTO_BIN=/usr/sbin/mosquitto
#   QUIET_PCT=15 QUIET_WAIT=30  (before each run, wait up to QUIET_WAIT s for
#                                the host to be at most QUIET_PCT % busy)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
TARGETS=${TARGETS:-"mosquitto hawser"}
SCENARIOS=${SCENARIOS:-"idle fanin fanout p2p p2p-max"}
QOS=${QOS:-"0 1"}
MQTT=${MQTT:-5}
TRANSPORT=${TRANSPORT:-tcp}
SIZE=${SIZE:-64}
DURATION=${DURATION:-10}
IDLE_CONNS=${IDLE_CONNS:-10000}
FANIN_PUBS=${FANIN_PUBS:-100}
FANOUT_SUBS=${FANOUT_SUBS:-1000}
P2P_PAIRS=${P2P_PAIRS:-1000}
FANIN_RATE=${FANIN_RATE:-20000}
FANOUT_RATE=${FANOUT_RATE:-50}
P2P_RATE=${P2P_RATE:-20000}
MAX_PAIRS=${MAX_PAIRS:-100}
MAX_WINDOW=${MAX_WINDOW:-16}
CONN_RATE=${CONN_RATE:-20000}
TARGET_CPU=${TARGET_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
HAWSER_BIN=${HAWSER_BIN:-$BUILD_DIR/bin/hawser}
MOSQUITTO_BIN=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
QUIET_PCT=${QUIET_PCT:-15}
QUIET_WAIT=${QUIET_WAIT:-30}
LOADGEN=$BUILD_DIR/bin/loadgen
RESULTS_DIR=$ROOT/bench/results

WORK=$(mktemp -d /tmp/hawser-bench.XXXXXX)
LINES=$WORK/results.jsonl
TARGET_PID=""
: >"$LINES"

log() { printf 'bench: %s\n' "$*" >&2; }

stop_target() {
	if [[ -n $TARGET_PID ]]; then
		kill "$TARGET_PID" 2>/dev/null || true
		# Bounded wait, then force: a wedged target must not hang the run.
		for _ in $(seq 50); do
			kill -0 "$TARGET_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$TARGET_PID" 2>/dev/null || true
		wait "$TARGET_PID" 2>/dev/null || true
		TARGET_PID=""
	fi
}
cleanup() { stop_target; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: true once something accepts on 127.0.0.1:PORT (10 s max).
wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		kill -0 "$TARGET_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# start_target NAME: sets TARGET_PID and PORT (the port for TRANSPORT).
start_target() {
	local name=$1 mport wsport
	mport=$(free_port)
	wsport=$(free_port)
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
			listener $mport 127.0.0.1
			listener $wsport 127.0.0.1
			protocol websockets
		EOF
		taskset -c "$TARGET_CPU" "$MOSQUITTO_BIN" -c "$WORK/mosquitto.conf" \
		    >>"$WORK/mosquitto.out" 2>&1 &
		TARGET_PID=$!
		;;
	hawser)
		local hport
		hport=$(free_port)
		taskset -c "$TARGET_CPU" "$HAWSER_BIN" \
		    --set "edge.mqtt_listen=127.0.0.1:$mport" \
		    --set "edge.ws_listen=127.0.0.1:$wsport" \
		    --set "edge.http_listen=127.0.0.1:$hport" \
		    --set "broker.http_listen=" --set "router.http_listen=" \
		    --set "log.level=warn" >>"$WORK/hawser.out" 2>&1 &
		TARGET_PID=$!
		;;
	*)
		log "unknown target $name"
		return 1
		;;
	esac
	PORT=$mport
	[[ $TRANSPORT == ws ]] && PORT=$wsport
	if ! wait_port "$PORT"; then
		log "$name did not start; its output:"
		tail -n 20 "$WORK/$name.out" >&2 || true
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

# run_one TARGET SCENARIO QOS LOADGEN-ARGS...: one measurement, one line.
run_one() {
	local target=$1 scen=$2 qos=$3 line
	shift 3
	if ! start_target "$target"; then
		echo "{\"scenario\":\"$scen\",\"target\":\"$target\",\"qos\":$qos,\"error\":\"target did not start\"}" >>"$LINES"
		return 0
	fi
	wait_quiet
	log "$target $scen qos=$qos $*"
	# The loadgen bounds itself; timeout is only a guard against a bug.
	line=$(timeout 600 taskset -c "$LOADGEN_CPU" "$LOADGEN" -v --port "$PORT" --pid "$TARGET_PID" \
	    --target "$target" --transport "$TRANSPORT" --mqtt "$MQTT" --qos "$qos" \
	    --size "$SIZE" --conn-rate "$CONN_RATE" "$@" | tail -n 1) || true
	if ! kill -0 "$TARGET_PID" 2>/dev/null; then
		log "$target exited during $scen"
		line=""
	fi
	stop_target
	if [[ -z $line ]]; then
		line="{\"scenario\":\"$scen\",\"target\":\"$target\",\"qos\":$qos,\"error\":\"no result\"}"
	fi
	# Scenario names of the table, not of the loadgen (p2p-max is p2p).
	echo "$line" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d["scenario"]=sys.argv[1]; print(json.dumps(d))' "$scen" >>"$LINES"
}

# ---- build
if [[ ! -f $BUILD_DIR/build.ninja && ! -f $BUILD_DIR/Makefile ]]; then
	cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi
build_targets="loadgen"
[[ " $TARGETS " == *" hawser "* ]] && build_targets="loadgen hawser"
if ! cmake --build "$BUILD_DIR" --target $build_targets >&2; then
	log "building hawser failed; measuring the other targets only"
	cmake --build "$BUILD_DIR" --target loadgen >&2
	TARGETS=${TARGETS//hawser/}
fi
[[ " $TARGETS " == *" mosquitto "* && ! -x $MOSQUITTO_BIN ]] && {
	log "no $MOSQUITTO_BIN (apt-get install mosquitto); skipping it"
	TARGETS=${TARGETS//mosquitto/}
}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- scenarios
for scen in $SCENARIOS; do
	for target in $TARGETS; do
		case $scen in
		idle)
			run_one "$target" idle 0 --scenario idle --conns "$IDLE_CONNS" --hold 3
			;;
		fanin)
			for q in $QOS; do
				run_one "$target" fanin "$q" --scenario fanin --pubs "$FANIN_PUBS" \
				    --rate "$FANIN_RATE" --duration "$DURATION"
			done
			;;
		fanout)
			for q in $QOS; do
				run_one "$target" fanout "$q" --scenario fanout --subs "$FANOUT_SUBS" \
				    --rate "$FANOUT_RATE" --duration "$DURATION"
			done
			;;
		p2p)
			for q in $QOS; do
				run_one "$target" p2p "$q" --scenario p2p --pairs "$P2P_PAIRS" \
				    --rate "$P2P_RATE" --duration "$DURATION"
			done
			;;
		p2p-max)
			for q in $QOS; do
				run_one "$target" p2p-max "$q" --scenario p2p --pairs "$MAX_PAIRS" \
				    --rate 0 --window "$MAX_WINDOW" --duration "$DURATION"
			done
			;;
		*)
			log "unknown scenario $scen"
			;;
		esac
	done
done

# ---- report
mkdir -p "$RESULTS_DIR"
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
SANITIZER=$(sed -n 's/^HAWSER_SANITIZER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
[[ -n $SANITIZER ]] && log "warning: $BUILD_DIR is built with HAWSER_SANITIZER=$SANITIZER"
export BUILD_TYPE SANITIZER
python3 - "$LINES" "$RESULTS_DIR/latest.json" <<'EOF'
import json, os, platform, sys, time

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
env = {k: os.environ.get(k) for k in (
    "TARGETS", "SCENARIOS", "QOS", "MQTT", "TRANSPORT", "SIZE", "DURATION",
    "IDLE_CONNS", "FANIN_PUBS", "FANOUT_SUBS", "P2P_PAIRS", "FANIN_RATE",
    "FANOUT_RATE", "P2P_RATE", "MAX_PAIRS", "MAX_WINDOW") if os.environ.get(k)}
doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
             "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                          if l.startswith("model name")), "?")},
    "env": env,
    "build": {"type": os.environ.get("BUILD_TYPE", ""),
              "sanitizer": os.environ.get("SANITIZER", "")},
    "results": rows,
}
with open(sys.argv[2], "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")

# One row per (scenario, qos, metric); a column per target, then the ratio.
metrics = {
    "idle": [("connects/s", "connects_per_s"), ("RSS/conn (B)", "rss_per_conn_bytes"),
             ("CPU/conn (us)", "cpu_us_per_conn"), ("target CPU %", "target_cpu_pct"),
             ("other processes CPU %", "others_cpu_pct")],
    "pub": [("deliveries/s", "msgs_per_s"), ("lost", "lost"), ("p50 (us)", "p50_us"),
            ("p99 (us)", "p99_us"), ("max (us)", "max_us"),
            ("CPU/delivery (us)", "cpu_us_per_msg"), ("target CPU %", "target_cpu_pct"),
            ("loadgen CPU %", "loadgen_cpu_pct"), ("other processes CPU %", "others_cpu_pct")],
}
targets = []
for r in rows:
    if r["target"] not in targets:
        targets.append(r["target"])
keys = []
for r in rows:
    k = (r["scenario"], r.get("qos", 0))
    if k not in keys:
        keys.append(k)
by = {(r["scenario"], r.get("qos", 0), r["target"]): r for r in rows}

def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.1f}" if abs(v) < 100 and v != int(v) else f"{v:,.0f}"

head = ["scenario", "qos", "metric"] + targets
ratio = "hawser" in targets and "mosquitto" in targets
if ratio:
    head.append("hawser/mosquitto")
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for scen, qos in keys:
    for label, key in metrics["idle" if scen == "idle" else "pub"]:
        cells = [scen, str(qos), label]
        vals = {}
        for t in targets:
            r = by.get((scen, qos, t))
            if r is None:
                cells.append("-")
            elif "error" in r:
                cells.append(r["error"])
            elif r.get("ready", 0) < r.get("conns", 0):
                cells.append(f"{r['failed']} conns failed")
            else:
                vals[t] = r.get(key)
                cells.append(fmt(vals[t]))
        if ratio:
            m, h = vals.get("mosquitto"), vals.get("hawser")
            cells.append(f"{h / m:.2f}" if m and h is not None else "-")
        print("| " + " | ".join(cells) + " |")
print(f"\n(results: {sys.argv[2]})")
EOF
