#!/usr/bin/env bash
# test_image_libs.sh: the Dockerfile's runtime stage installs every shared
# library the four binaries load.
#
# No Docker engine is needed: the binaries are built here (Debian 12, the
# image's base), `ldd` lists what they load, `dpkg -S` names the package of
# each library, and every such package must be in the dependency closure of
# the runtime stage's `apt-get install` list plus the debian:12 base
# (Priority: required packages, which every Debian image has).
# lws's event-library plugins, loaded with dlopen, are added to the list
# when the edge uses one. Then, to prove the check can fail, each listed package that is the only
# way in for a needed library is removed from the list in turn and the
# check must then report it missing.
#
# Usage: tests/deploy/test_image_libs.sh [DOCKERFILE]
#   HAWSER_BIN_DIR=dir  use binaries from dir (default: build/bin if it has
#                       all four, else build them into build-deploy/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dockerfile="${1:-$root/Dockerfile}"
bins=(hawser hawser-edge hawser-broker hawser-router)

have_all() {
	local d="$1" b
	for b in "${bins[@]}"; do [ -x "$d/$b" ] || return 1; done
}

bindir="${HAWSER_BIN_DIR:-}"
if [ -z "$bindir" ]; then
	if have_all "$root/build/bin"; then
		bindir="$root/build/bin"
	else
		bindir="$root/build-deploy/bin"
		echo "[image-libs] building ${bins[*]} in build-deploy/" >&2
		cmake -S "$root" -B "$root/build-deploy" -G Ninja -DHAWSER_TESTS=OFF >/dev/null
		cmake --build "$root/build-deploy" --target "${bins[@]}" >/dev/null
	fi
fi
have_all "$bindir" || { echo "[image-libs] missing binaries in $bindir" >&2; exit 1; }

# One "binary<TAB>library path" line per resolved library.
libs="$(mktemp)"
trap 'rm -f "$libs"' EXIT
for b in "${bins[@]}"; do
	out="$(ldd "$bindir/$b")" || { echo "[image-libs] ldd failed on $b" >&2; exit 1; }
	if grep -q 'not found' <<<"$out"; then
		echo "[image-libs] $b has unresolved libraries:" >&2
		grep 'not found' <<<"$out" >&2
		exit 1
	fi
	# "libx.so.1 => /path (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
	awk -v b="$b" '$2 == "=>" && $3 ~ /^\// { print b "\t" $3 }
	               $1 ~ /^\// { print b "\t" $1 }' <<<"$out" >>"$libs"
done

# libwebsockets loads its event-library support (libev, libuv, glib) as a
# plugin with dlopen at context creation, which ldd cannot see. The edge
# (and so the all-in-one) asks for libev: its plugin must be in the image.
if grep -q 'LWS_SERVER_OPTION_LIBEV' "$root"/services/edge/src/*.c; then
	plugin="$(find /usr/lib -name 'libwebsockets-evlib_ev.so*' -print -quit)"
	[ -n "$plugin" ] || { echo "[image-libs] the edge uses lws's libev plugin but it is not installed here" >&2; exit 1; }
	printf 'hawser-edge\t%s\nhawser\t%s\n' "$plugin" "$plugin" >>"$libs"
fi

python3 - "$dockerfile" "$libs" <<'PY'
import os, re, subprocess, sys

dockerfile, libs_file = sys.argv[1], sys.argv[2]

def runtime_install_list(text):
    """Packages of the `apt-get install` in the last stage (the runtime)."""
    joined = re.sub(r"\\\n", " ", text)
    stages = re.split(r"(?im)^\s*FROM\s", joined)
    last = stages[-1]
    pkgs = []
    for line in last.splitlines():
        if not re.match(r"\s*RUN\s", line):
            continue
        for cmd in re.split(r"&&|;", line):
            words = cmd.split()
            if "apt-get" in words and "install" in words:
                for w in words[words.index("install") + 1:]:
                    if not w.startswith("-"):
                        pkgs.append(w)
    return pkgs

def dpkg_owner(path):
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        if p.startswith("/usr/"):
            cands.append(p[4:])
        else:
            cands.append("/usr" + p)
    for p in cands:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                if "diversion" in line:
                    continue
                return line.split(":", 1)[0].split(":")[0]
    return None

# Installed package database: Depends, Pre-Depends, Provides, Priority.
q = subprocess.run(
    ["dpkg-query", "-W", "-f",
     "${Package}\t${Status}\t${Priority}\t${Essential}\t${Pre-Depends}\t${Depends}\t${Provides}\n"],
    capture_output=True, text=True, check=True).stdout
db, provides, base = {}, {}, set()
for line in q.splitlines():
    name, status, prio, ess, pre, dep, prov = (line.split("\t") + [""] * 7)[:7]
    if not status.endswith(" installed"):
        continue
    db[name] = ", ".join(x for x in (pre, dep) if x)
    for p in prov.split(","):
        p = p.strip().split(" ")[0]
        if p:
            provides.setdefault(p, []).append(name)
    if prio == "required" or ess == "yes":
        base.add(name)

def alternatives(field):
    for clause in field.split(","):
        clause = clause.strip()
        if not clause:
            continue
        yield [re.sub(r"\s*\(.*?\)|\s*\[.*?\]|:\w+", "", a).strip()
               for a in clause.split("|")]

def closure(roots):
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for alts in alternatives(db.get(p, "")):
            for a in alts:
                for real in ([a] if a in db else provides.get(a, [])):
                    todo.append(real)
    return seen

# Needed packages, with the libraries that need them.
needed = {}
failures = []
with open(libs_file) as f:
    for line in f:
        binary, lib = line.rstrip("\n").split("\t")
        owner = dpkg_owner(lib)
        if owner is None:
            failures.append(f"{binary}: {lib} belongs to no Debian package")
            continue
        needed.setdefault(owner, set()).add(f"{binary}: {os.path.basename(lib)}")

listed = runtime_install_list(open(dockerfile).read())
passed = 0

def missing_for(pkgs):
    unknown = [p for p in pkgs if p not in db]
    have = closure(set(p for p in pkgs if p in db) | base)
    return unknown, sorted(p for p in needed if p not in have)

if not listed:
    failures.append("no apt-get install in the runtime stage of " + dockerfile)
unknown, missing = missing_for(listed)
for p in unknown:
    failures.append(f"runtime stage installs {p}, which is not installed here to check (typo?)")
for p in missing:
    failures.append(f"runtime stage lacks {p}, needed by " + ", ".join(sorted(needed[p])))
if not unknown and not missing and listed:
    passed += 1
    print(f"ok: {len(needed)} packages needed by the binaries are covered by "
          f"the runtime list ({' '.join(listed)}) and the debian base")

# The check must fail when a package that brings a needed library in is
# dropped from the list.
for p in listed:
    rest = [x for x in listed if x != p]
    _, miss = missing_for(rest)
    if p in needed and p not in closure(set(x for x in rest if x in db) | base):
        if p in miss:
            passed += 1
            print(f"ok: without {p} the check reports it missing")
        else:
            failures.append(f"removing {p} from the list was not detected")

# The runtime stage's shape that the chart relies on.
last_stage = re.split(r"(?im)^\s*FROM\s", re.sub(r"\\\n", " ", open(dockerfile).read()))[-1]
def shape(cond, what):
    global passed
    if cond:
        passed += 1
        print("ok: " + what)
    else:
        failures.append(what)
copies = " ".join(re.findall(r"(?m)^\s*COPY\s+--from=\S+\s+(.*)$", last_stage))
shape(all(re.search(r"/bin/%s(\s|$)" % b, copies) for b in
          ("hawser", "hawser-edge", "hawser-broker", "hawser-router")) and
      copies.rstrip().endswith("/usr/local/bin/"),
      "runtime stage copies the four binaries into /usr/local/bin")
shape(re.search(r"(?m)^\s*USER\s+10001(:10001)?\s*$", last_stage) is not None,
      "runtime stage runs as uid 10001 (the chart's runAsUser)")
exposed = set(" ".join(re.findall(r"(?m)^\s*EXPOSE\s+(.*)$", last_stage)).split())
shape({"1883", "8083", "9100", "7100", "7200", "7300"} <= exposed,
      "runtime stage exposes 1883 8083 9100 7100 7200 7300")

for f in failures:
    print("FAIL: " + f)
print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
