# tools.sh: pinned helm and kubeconform (built with `go install` into the
# cache when absent) and offline Kubernetes JSON schemas from the PyPI
# package kubernetes-validate (pip download, no install). Sourced by the
# tests in this folder; sets helm, kubeconform, schema_src, K8S_VERSIONS,
# py (a python3 with PyYAML), tools_s (seconds spent here).
#
#   HAWSER_DEPLOY_CACHE  cache folder (default .cache/deploy)
cache="${HAWSER_DEPLOY_CACHE:-$root/.cache/deploy}"
HELM_VERSION=v3.16.4
# Kubernetes minor that helm reports by default (its Makefile derives it
# from the client-go it is built with: v0.31 -> 1.31).
HELM_K8S_MINOR=31
KUBECONFORM_VERSION=v0.6.7
SCHEMA_PKG=kubernetes-validate
SCHEMA_PKG_VERSION=1.37.0
K8S_VERSIONS=(1.35.0 1.36.0 1.37.0)

say() { printf '[chart] %s\n' "$*" >&2; }

# A Python with PyYAML for the render checks (Debian: python3-yaml).
py=""
for c in "${HAWSER_PYTHON:-}" python3 /usr/bin/python3; do
	if [ -n "$c" ] && "$c" -c 'import yaml' 2>/dev/null; then py="$c"; break; fi
done
if [ -z "$py" ]; then
	echo "FAIL: no python3 with PyYAML (apt-get install python3-yaml)"
	echo "0 passed, 1 failed"
	exit 1
fi

mkdir -p "$cache/bin"
helm="$cache/bin/helm"
kubeconform="$cache/bin/kubeconform"

# --- tools -------------------------------------------------------------------
t_tools=$(date +%s)
if ! [ -x "$helm" ] || [ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" != "$HELM_VERSION" ]; then
	say "go install helm $HELM_VERSION"
	ld="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	for pkg in pkg/lint/rules pkg/chartutil; do
		ld="$ld -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_K8S_MINOR"
	done
	GOBIN="$cache/bin" GOFLAGS=-buildvcs=false go install -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
if ! [ -x "$kubeconform" ] || [ "$(cat "$cache/bin/.kubeconform-version" 2>/dev/null)" != "$KUBECONFORM_VERSION" ]; then
	say "go install kubeconform $KUBECONFORM_VERSION"
	GOBIN="$cache/bin" GOFLAGS=-buildvcs=false go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
	echo "$KUBECONFORM_VERSION" >"$cache/bin/.kubeconform-version"
fi
schema_src="$cache/schemas/$SCHEMA_PKG-$SCHEMA_PKG_VERSION"
if ! [ -f "$schema_src/.complete" ]; then
	say "pip download $SCHEMA_PKG==$SCHEMA_PKG_VERSION (Kubernetes JSON schemas)"
	dl="$cache/dl"
	mkdir -p "$dl"
	python3 -m pip download --quiet --disable-pip-version-check --no-deps \
		--only-binary=:all: -d "$dl" "$SCHEMA_PKG==$SCHEMA_PKG_VERSION"
	rm -rf "$schema_src"
	python3 - "$dl" "$schema_src" "${K8S_VERSIONS[@]}" <<'PY'
import glob, os, sys, zipfile
dl, dest, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
whl = sorted(glob.glob(os.path.join(dl, "kubernetes_validate-*.whl")))[-1]
prefix = "kubernetes_validate/kubernetes-json-schema/"
dirs = tuple(f"{prefix}v{v}-local-strict/" for v in versions)
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(dirs) and not name.endswith("/"):
            out = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as f:
                f.write(src.read())
PY
	touch "$schema_src/.complete"
fi
tools_s=$(($(date +%s) - t_tools))
say "tools ready in ${tools_s}s: $("$helm" version --template '{{.Version}}'), kubeconform $KUBECONFORM_VERSION, schemas ${K8S_VERSIONS[*]}"

