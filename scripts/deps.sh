#!/usr/bin/env bash
# Installs everything Hawser needs to build and test, idempotently:
#   - Debian packages (apt-get runs only when one of them is missing),
#   - a Python venv at tests/.venv with tests/integration/requirements.txt,
#   - tests/js/node_modules from tests/js/package-lock.json (npm ci).
# Fast when everything is present: each step is skipped when its stamp
# (the hash of its inputs) matches. Runs as root, or uses sudo if it exists.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf '[deps] %s\n' "$*"; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		say "need root to run: $*"
		exit 1
	fi
}

# --- Debian packages ---------------------------------------------------------
pkgs=(
	build-essential cmake ninja-build pkg-config
	libwebsockets-dev libnng-dev libhiredis-dev librdkafka-dev
	libprotobuf-c-dev protobuf-c-compiler libcmocka-dev libyaml-dev
	libjwt-dev libcurl4-openssl-dev libssl-dev libjemalloc-dev
	mosquitto mosquitto-clients redis-server clang
	python3 python3-venv
	# scripts/kafka.sh (Kafka integration tests) runs Apache Kafka from Maven Central.
	openjdk-17-jre-headless maven
	# tests/deploy: chart render checks (PyYAML), TLS certificates for the e2e run.
	python3-yaml openssl
)
# Node may come from elsewhere (nvm, nodesource); only install Debian's when
# there is none on PATH.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	say "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update
	as_root apt-get install -y --no-install-recommends "${missing[@]}"
else
	say "Debian packages: all ${#pkgs[@]} present"
fi

# The Debian mosquitto and redis packages start system services on install;
# the tests start their own instances on free ports, so those are not needed,
# and they would hold 1883/6379 that `scripts/run.sh` wants.
# (Left alone here: stopping system services is the operator's choice.)

# --- Python venv -------------------------------------------------------------
venv="$root/tests/.venv"
req="$root/tests/integration/requirements.txt"
py="${HAWSER_PYTHON:-python3}"
stamp_py="$( (cat "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.hawser-stamp" 2>/dev/null)" = "$stamp_py" ] &&
	"$venv/bin/python" -c 'import paho.mqtt, pytest, pytest_timeout' 2>/dev/null; then
	say "Python venv: up to date ($venv)"
else
	say "creating Python venv at $venv"
	rm -rf "$venv"
	"$py" -m venv "$venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
	echo "$stamp_py" >"$venv/.hawser-stamp"
	say "Python venv: installed $(tr '\n' ' ' <"$req")"
fi

# --- Node modules (MQTT.js) --------------------------------------------------
js="$root/tests/js"
stamp_js="$(cat "$js/package.json" "$js/package-lock.json" | sha256sum | cut -c1-16)"
if [ -d "$js/node_modules/mqtt" ] && [ "$(cat "$js/node_modules/.hawser-stamp" 2>/dev/null)" = "$stamp_js" ]; then
	say "node modules: up to date ($js/node_modules)"
else
	say "installing node modules in $js (npm ci)"
	(cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
	echo "$stamp_js" >"$js/node_modules/.hawser-stamp"
fi
say "done"
