#!/usr/bin/env bash
# test_chart.sh: the Helm chart lints, renders and validates offline.
#
#  1. helm and kubeconform (pinned) are built with `go install` into the
#     cache when absent; Kubernetes JSON schemas come from the PyPI package
#     kubernetes-validate (pip download, no install) and are made
#     self-contained by k8s_schemas.py.
#  2. For each values profile in deploy/helm/hawser/ci/: helm lint --strict,
#     helm template, check_render.py (tier wiring, rollout and drain rules,
#     the rendered config accepted by hawser-edge --check-config), and
#     kubeconform -strict against three Kubernetes versions (ServiceMonitor,
#     a CRD with no schema in the package, is skipped).
#  3. values.schema.json refuses bad values; deploy/k8s/hawser.yaml equals a
#     fresh render.
#
# Environment:
#   HAWSER_DEPLOY_CACHE  tool and schema cache (default .cache/deploy)
#   HAWSER_BIN_DIR       directory with hawser-edge (default build/bin, else
#                        built into build-deploy/)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
chart="$root/deploy/helm/hawser"
source "$root/tests/deploy/tools.sh"
passed=0
failed=0
ok() { printf 'ok: %s\n' "$*"; passed=$((passed + 1)); }
bad() { printf 'FAIL: %s\n' "$*"; failed=$((failed + 1)); }

# --- hawser-edge for --check-config ------------------------------------------
edge_bin=""
for d in "${HAWSER_BIN_DIR:-}" "$root/build/bin" "$root/build-deploy/bin"; do
	if [ -n "$d" ] && [ -x "$d/hawser-edge" ]; then edge_bin="$d/hawser-edge"; break; fi
done
if [ -z "$edge_bin" ]; then
	say "building hawser-edge in build-deploy/"
	if cmake -S "$root" -B "$root/build-deploy" -G Ninja -DHAWSER_TESTS=OFF >/dev/null &&
		cmake --build "$root/build-deploy" --target hawser-edge >/dev/null; then
		edge_bin="$root/build-deploy/bin/hawser-edge"
	else
		bad "could not build hawser-edge for the config check"
	fi
fi

# --- profiles ----------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
schemas="$cache/schemas/standalone"
for values in "$chart"/ci/*-values.yaml; do
	p="$(basename "$values" -values.yaml)"
	if out="$("$helm" lint --strict "$chart" -f "$values" 2>&1)"; then
		ok "$p: helm lint --strict"
	else
		bad "$p: helm lint --strict"
		printf '%s\n' "$out"
	fi
	if ! "$helm" template hawser "$chart" -n hawser-ci -f "$values" >"$work/$p.yaml" 2>"$work/$p.err"; then
		bad "$p: helm template"
		cat "$work/$p.err"
		continue
	fi
	ok "$p: helm template ($(grep -c '^kind:' "$work/$p.yaml") objects)"
	if out="$("$py" "$root/tests/deploy/check_render.py" "$work/$p.yaml" "$edge_bin" 2>&1)"; then
		ok "$p: render checks ($(grep -c '^ok:' <<<"$out") assertions)"
	else
		bad "$p: render checks"
		grep -v '^ok:' <<<"$out"
	fi
	skip="$(python3 "$root/tests/deploy/k8s_schemas.py" "$schema_src" "$schemas" \
		"$(IFS=,; echo "${K8S_VERSIONS[*]}")" "$work/$p.yaml" | paste -sd, -)"
	for v in "${K8S_VERSIONS[@]}"; do
		if out="$("$kubeconform" -strict -summary -kubernetes-version "$v" ${skip:+-skip "$skip"} \
			-schema-location "$schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
			"$work/$p.yaml" 2>&1)"; then
			ok "$p: kubeconform -strict Kubernetes $v ($(tail -1 <<<"$out" | sed 's/^Summary: //'))"
		else
			bad "$p: kubeconform -strict Kubernetes $v"
			printf '%s\n' "$out"
		fi
	done
done

# --- NOTES.txt renders for every profile ------------------------------------
# (`helm install --dry-run=client` would show it but still dials a cluster in
# helm 3.16, helm/helm#13144; so a copy of the chart renders NOTES.txt
# through tpl into a ConfigMap.)
cp -r "$chart" "$work/notes-chart"
cp "$chart/templates/NOTES.txt" "$work/notes-chart/notes.tpl"
cat >"$work/notes-chart/templates/zz-notes.yaml" <<'TPL'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ tpl (.Files.Get "notes.tpl") . | quote }}
TPL
for values in "$chart"/ci/*-values.yaml; do
	p="$(basename "$values" -values.yaml)"
	if "$helm" template hawser "$work/notes-chart" -n hawser-ci -f "$values" \
		--show-only templates/zz-notes.yaml >"$work/notes-$p.yaml" 2>&1 &&
		"$py" -c 'import sys, yaml
n = yaml.safe_load(open(sys.argv[1]))["data"]["notes"]
assert "helm test -n hawser-ci hawser" in n and ".hawser-ci.svc." in n, n' "$work/notes-$p.yaml"; then
		ok "$p: NOTES.txt renders (edge address, helm test)"
	else
		bad "$p: NOTES.txt"
		cat "$work/notes-$p.yaml"
	fi
done

# --- values.schema.json refuses what the binaries or the chart would not run --
refuse() {
	local why="$1"; shift
	if "$helm" template hawser "$chart" "$@" >/dev/null 2>"$work/refuse.err"; then
		bad "refuses $why (rendered anyway)"
	else
		ok "refuses $why"
	fi
}
refuse "an unknown edge config key" --set edge.config.max_conections=10
refuse "an out-of-range broker config value" --set broker.config.receive_maximum=0
refuse "TLS without a Secret" --set tls.enabled=true
refuse "an unknown store backend" --set store.backend=etcd

# --- deploy/k8s is the default render ----------------------------------------
if "$helm" template hawser "$chart" --skip-tests >"$work/k8s.yaml" &&
	diff -u "$root/deploy/k8s/hawser.yaml" "$work/k8s.yaml" >"$work/k8s.diff"; then
	ok "deploy/k8s/hawser.yaml equals helm template hawser deploy/helm/hawser --skip-tests"
else
	bad "deploy/k8s/hawser.yaml is stale; regenerate it (see deploy/k8s/README.md)"
	head -40 "$work/k8s.diff"
fi

say "total ${SECONDS}s (tools ${tools_s}s)"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
