#!/usr/bin/env python3
"""Checks on one `helm template` render of deploy/helm/hawser that a schema
cannot make: the tiers are wired to each other, rollouts never take a pod
away before its replacement is ready, the edge gets time to drain, every
HPA/PDB/Service points at a Deployment of the release, and the rendered
hawser config (with the pods' HAWSER_* environment) is accepted by the real
binary's --check-config.

usage: check_render.py RENDER.yaml [HAWSER_EDGE_BINARY]
Prints "ok: ..." / "FAIL: ..." lines and exits 1 on any failure.
"""
import os
import subprocess
import sys
import tempfile

import yaml

TIERS = ("edge", "broker", "router")
HTTP_PORT = {"edge": 9100, "broker": 9101, "router": 9102}
fails, oks = [], []


def check(cond, what):
    (oks if cond else fails).append(what)


def main(argv):
    path = argv[1]
    binary = argv[2] if len(argv) > 2 else ""
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deps = {d["metadata"]["labels"].get("app.kubernetes.io/component"): d
            for d in by_kind.get("Deployment", [])}
    check(set(deps) == set(TIERS), f"one Deployment per tier (got {sorted(deps)})")
    if set(deps) != set(TIERS):
        return report()
    ns = deps["edge"]["metadata"]["namespace"]

    cms = by_kind.get("ConfigMap", [])
    check(len(cms) == 1 and "hawser.yaml" in cms[0]["data"], "one ConfigMap with hawser.yaml")
    cfg_text = cms[0]["data"]["hawser.yaml"]
    cfg = yaml.safe_load(cfg_text)

    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    headless = [s for s in services.values() if s["spec"].get("clusterIP") == "None"]
    check(len(headless) == 1 and
          headless[0]["spec"]["selector"].get("app.kubernetes.io/component") == "broker",
          "a headless Service selects the brokers")
    bhost = f"{headless[0]['metadata']['name']}.{ns}.svc." if headless else "?"
    bport = deps["broker"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    members = cfg["edge"]["brokers"] + cfg["router"]["brokers"] + cfg["broker"]["peers"]
    check(len(members) == 3 and
          all(u.startswith("dns://" + bhost) and u.endswith(f":{bport}") for u in members),
          "edge.brokers, router.brokers and broker.peers are every address behind the "
          "broker headless Service (dns://, its inbox port)")
    rsvc = [s for s in services.values()
            if s["spec"]["selector"].get("app.kubernetes.io/component") == "router"]
    check(len(rsvc) == 1 and all(u.startswith(f"tcp://{rsvc[0]['metadata']['name']}.{ns}.svc.")
                                 for u in cfg["broker"]["routers"]),
          "broker.routers dials the router Service")

    checksums = set()
    for tier, d in deps.items():
        spec = d["spec"]
        pod = spec["template"]
        labels = pod["metadata"]["labels"]
        check(spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0,
              f"{tier}: rolling update with maxUnavailable 0")
        check(labels.get("app.kubernetes.io/component") == tier and
              all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
              f"{tier}: pod labels carry the component and match the selector")
        checksums.add(pod["metadata"]["annotations"].get("checksum/config"))
        c = pod["spec"]["containers"][0]
        check(c["command"] == [f"/usr/local/bin/hawser-{tier}"] and
              c["args"] == ["-c", "/etc/hawser/hawser.yaml"],
              f"{tier}: runs hawser-{tier} on the mounted config")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        check(ports.get("http") == HTTP_PORT[tier] and
              cfg[tier]["http_listen"].endswith(f":{ports.get('http')}"),
              f"{tier}: http port {HTTP_PORT[tier]} matches {tier}.http_listen")
        check(cfg[tier]["listen"].endswith(f":{ports.get('inbox')}"),
              f"{tier}: inbox port matches {tier}.listen")
        for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            p = c.get(probe, {}).get("httpGet", {})
            check(p.get("path") == want and p.get("port") == "http",
                  f"{tier}: {probe} on {want}")
        env = [e["name"] for e in c.get("env", [])]
        adv = next((e for e in c.get("env", []) if e["name"] == f"HAWSER_{tier.upper()}_ADVERTISE"), None)
        check(adv is not None and adv.get("value") == f"tcp://$(POD_IP):{ports.get('inbox')}" and
              "POD_IP" in env and env.index("POD_IP") < env.index(adv["name"]),
              f"{tier}: advertises tcp://$(POD_IP):<inbox> (POD_IP defined first)")
        sel = [s for s in services.values()
               if s["spec"].get("clusterIP") != "None" and
               all(labels.get(k) == v for k, v in s["spec"]["selector"].items())]
        check(len(sel) == 1 and any(p["name"] == "http" for p in sel[0]["spec"]["ports"]),
              f"{tier}: one Service selects it and exposes its http (metrics) port")
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["spec"]["volumes"]}
        check(all(n in vols for n in mounts), f"{tier}: every volumeMount has a volume")
    check(len(checksums) == 1 and None not in checksums, "every tier has the same checksum/config")

    edge = deps["edge"]["spec"]["template"]["spec"]
    pre = edge["containers"][0].get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else -1
    drain = -(-int(cfg["edge"]["drain_timeout_ms"]) // 1000)
    check(sleep >= 0 and edge["terminationGracePeriodSeconds"] > sleep + drain,
          f"edge: grace period {edge.get('terminationGracePeriodSeconds')}s covers preStop {sleep}s + drain {drain}s")

    for h in by_kind.get("HorizontalPodAutoscaler", []):
        name, tier = h["metadata"]["name"], h["metadata"]["labels"].get("app.kubernetes.io/component")
        ref = h["spec"]["scaleTargetRef"]
        check(tier in deps and ref["kind"] == "Deployment" and ref["name"] == deps[tier]["metadata"]["name"],
              f"HPA {name} scales the {tier} Deployment")
        check("replicas" not in deps[tier]["spec"], f"{tier}: no fixed replicas under an HPA")
        if tier == "edge":
            b = h["spec"].get("behavior", {}).get("scaleDown", {})
            check(b.get("stabilizationWindowSeconds", 0) > 0, "edge HPA: scale-down stabilization window")
    for p in by_kind.get("PodDisruptionBudget", []):
        tier = p["metadata"]["labels"].get("app.kubernetes.io/component")
        check(tier in deps and p["spec"]["selector"]["matchLabels"] ==
              deps[tier]["spec"]["selector"]["matchLabels"],
              f"PDB {p['metadata']['name']} selects the {tier} pods")

    if binary:
        # The pods' environment: literal values, and stand-ins for valueFrom.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAWSER_")}
        for tier, d in deps.items():
            for e in d["spec"]["template"]["spec"]["containers"][0].get("env", []):
                if not e["name"].startswith("HAWSER_"):
                    continue
                v = e.get("value", "x").replace("$(POD_IP)", "10.0.0.1")
                if e["name"] == "HAWSER_STORE_REDIS_URL":
                    v = "redis://:secret@redis:6379/0"
                env[e["name"]] = v
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(cfg_text)
            f.flush()
            r = subprocess.run([binary, "--check-config", "-c", f.name], env=env,
                               capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "hawser --check-config accepts the rendered config and pod env"
              + ("" if r.returncode == 0 else f" (rc {r.returncode}: {r.stdout.strip()} {r.stderr.strip()})"))
    return report()


def report():
    for w in oks:
        print("ok: " + w)
    for w in fails:
        print("FAIL: " + w)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
