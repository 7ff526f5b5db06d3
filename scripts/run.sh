#!/usr/bin/env bash
# Installs dependencies, builds, and runs the all-in-one gateway on its
# embedded defaults: MQTT on 1883, MQTT over WebSocket on 8083 (/mqtt),
# HTTP (/metrics, /healthz, /readyz) on 9100. Arguments go to `hawser`,
# e.g. bash scripts/run.sh --set edge.mqtt_listen=0.0.0.0:11883
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/deps.sh
bash scripts/build.sh
exec "$root/build/bin/hawser" "$@"
