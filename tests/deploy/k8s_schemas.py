#!/usr/bin/env python3
"""Standalone Kubernetes JSON schemas for kubeconform, offline.

The PyPI package kubernetes-validate ships the Kubernetes OpenAPI schemas
(yannh/kubernetes-json-schema layout) for every Kubernetes minor version as
"<version>-local[-strict]/<kind>-<group>-<version>.json" files whose $refs
point at a shared "/api/_definitions.json". kubeconform needs each kind's
schema self-contained (it would fetch the absolute $ref over the network),
so this script copies the definitions a kind reaches into the kind's own
"$defs" and rewrites the $refs to "#/$defs/...".

usage: k8s_schemas.py SRC_ROOT DEST_ROOT VERSION[,VERSION...] MANIFEST...
  SRC_ROOT   the package's kubernetes-json-schema directory
  DEST_ROOT  where "<vX.Y.Z>-standalone-strict/<file>.json" is written
  MANIFEST   rendered YAML files; the kinds found in them are converted
Kinds without a schema in the package (CRDs such as ServiceMonitor) are
listed on stdout, one per line, for kubeconform -skip.
"""
import json
import os
import re
import sys

REF = "/api/_definitions.json#/$defs/"


def kinds_in(paths):
    """(apiVersion, kind) pairs of every document in the manifests."""
    found = set()
    for path in paths:
        with open(path) as f:
            text = f.read()
        for doc in re.split(r"(?m)^---\s*$", text):
            api = re.search(r"(?m)^apiVersion:\s*(\S+)", doc)
            kind = re.search(r"(?m)^kind:\s*(\S+)", doc)
            if api and kind:
                found.add((api.group(1).strip("\"'"), kind.group(1).strip("\"'")))
    return found


def file_name(api_version, kind):
    """kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}.json."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return f"{kind.lower()}-{group.split('.')[0].lower()}-{version.lower()}.json"
    return f"{kind.lower()}-{api_version.lower()}.json"


def rewrite(node, wanted):
    """Point $refs at local $defs; collect the names referenced."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                if v.startswith(REF):
                    name = v[len(REF):]
                elif v.startswith("#/$defs/"):
                    name = v[len("#/$defs/"):]
                else:
                    raise SystemExit(f"unexpected $ref {v}")
                wanted.append(name)
                out[k] = "#/$defs/" + name
            else:
                out[k] = rewrite(v, wanted)
        return out
    if isinstance(node, list):
        return [rewrite(v, wanted) for v in node]
    return node


def standalone(schema, defs):
    wanted = []
    top = rewrite(schema, wanted)
    top.pop("$id", None)  # an absolute $id would make kubeconform resolve remotely
    out_defs, seen = {}, set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        out_defs[name] = rewrite(defs[name], wanted)
    top["$defs"] = out_defs
    return top


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    src, dest, versions, manifests = argv[1], argv[2], argv[3].split(","), argv[4:]
    kinds = kinds_in(manifests)
    missing = set()
    for v in versions:
        v = v if v.startswith("v") else "v" + v
        sdir = os.path.join(src, f"{v}-local-strict")
        ddir = os.path.join(dest, f"{v}-standalone-strict")
        if not os.path.isdir(sdir):
            raise SystemExit(f"no schemas for Kubernetes {v} in {src}")
        os.makedirs(ddir, exist_ok=True)
        defs = None
        for api, kind in sorted(kinds):
            name = file_name(api, kind)
            out = os.path.join(ddir, name)
            if os.path.exists(out):
                continue
            path = os.path.join(sdir, name)
            if not os.path.exists(path):
                missing.add(kind)
                continue
            if defs is None:
                with open(os.path.join(sdir, "_definitions.json")) as f:
                    defs = json.load(f)["$defs"]
            with open(path) as f:
                schema = json.load(f)
            tmp = out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(standalone(schema, defs), f)
            os.replace(tmp, out)
    for kind in sorted(missing):
        print(kind)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
