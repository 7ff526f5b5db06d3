#!/usr/bin/env bash
# test_image_build.sh: the Dockerfile's build stage works, without a Docker
# engine. The build context is the committed tree (git archive HEAD) less
# what .dockerignore excludes; the build stage's cmake/strip commands run on
# it with /src pointing at that copy (this machine is Debian 12 with the
# build stage's -dev packages, like the image). Then every binary must start
# (--version), and test_image_libs.sh runs on the result.
#
# Usage: tests/deploy/test_image_build.sh [DOCKERFILE]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dockerfile="${1:-$root/Dockerfile}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { printf 'ok: %s\n' "$*"; passed=$((passed + 1)); }
bad() { printf 'FAIL: %s\n' "$*"; failed=$((failed + 1)); }
finish() { printf '%d passed, %d failed\n' "$passed" "$failed"; [ "$failed" -eq 0 ]; exit; }

# Build context: committed files minus .dockerignore.
ctx="$work/src"
mkdir -p "$ctx"
git -C "$root" archive HEAD | tar -C "$ctx" -xf -
python3 - "$ctx" "$root/.dockerignore" <<'PY'
import fnmatch, os, shutil, sys
ctx, ignore = sys.argv[1], sys.argv[2]
pats = [l.strip().lstrip("/") for l in open(ignore) if l.strip() and not l.startswith("#")]
def ignored(rel):
    for p in pats:
        if fnmatch.fnmatch(rel, p) or (p.startswith("**/") and
                                       fnmatch.fnmatch(os.path.basename(rel), p[3:])):
            return True
    return False
for dirpath, dirs, files in os.walk(ctx, topdown=True):
    for name in list(dirs) + files:
        full = os.path.join(dirpath, name)
        if ignored(os.path.relpath(full, ctx)):
            shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
            if name in dirs:
                dirs.remove(name)
PY

# The build stage's commands that are not package installs.
cmds="$(python3 - "$dockerfile" <<'PY'
import re, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
stages = re.split(r"(?im)^\s*FROM\s", text)
build = next(s for s in stages if re.match(r"\S+\s+AS\s+build\b", s, re.I))
for line in build.splitlines():
    m = re.match(r"\s*RUN\s+(.*)", line)
    if not m:
        continue
    for cmd in m.group(1).split("&&"):
        cmd = " ".join(cmd.split())
        if cmd.startswith(("cmake", "strip")):
            print(cmd)
PY
)"
if [ -z "$cmds" ]; then bad "no cmake command in the Dockerfile's build stage"; finish; fi
while IFS= read -r cmd; do
	cmd="${cmd//\/src/$ctx}"
	if (cd "$ctx" && bash -c "$cmd") >"$work/build.log" 2>&1; then
		ok "build stage: ${cmd//$ctx//src}"
	else
		bad "build stage: ${cmd//$ctx//src}"
		tail -30 "$work/build.log"
		finish
	fi
done <<<"$cmds"

bin="$ctx/build/bin"
for b in hawser hawser-edge hawser-broker hawser-router; do
	if out="$(HAWSER_NODE_ID=t "$bin/$b" --version 2>&1)"; then
		ok "$b --version: $out"
	else
		bad "$b --version"
		printf '%s\n' "$out"
	fi
done

if out="$(HAWSER_BIN_DIR="$bin" "$root/tests/deploy/test_image_libs.sh" "$dockerfile" 2>&1)"; then
	ok "test_image_libs.sh on the built binaries ($(tail -1 <<<"$out"))"
else
	bad "test_image_libs.sh on the built binaries"
	printf '%s\n' "$out"
fi
finish
