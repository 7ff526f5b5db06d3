#!/usr/bin/env bash
# Configures and builds Hawser into build/ (binaries in build/bin/).
# Warnings are errors. Extra arguments go to the cmake configure step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
echo "[build] cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAWSER_WERROR=ON $*"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAWSER_WERROR=ON "$@" >/dev/null
cmake --build build
echo "[build] binaries: $(cd build/bin && ls | tr '\n' ' ')"
