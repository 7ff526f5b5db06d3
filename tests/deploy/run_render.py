#!/usr/bin/env python3
"""Run a `helm template` render of deploy/helm/hawser on this machine, as the
cluster would: each Deployment's container command, args and environment
(downward-API values filled in: pod IP 127.0.0.1, pod name <tier>-0), the
ConfigMap's hawser.yaml as the config file, and the in-cluster Service names
resolved to 127.0.0.1. Then, like the kubelet and `helm test`:

  - wait for every tier's startup line, then its readinessProbe path answers
    200 on the probe's port;
  - run the chart's test pod scripts (MQTT publish/subscribe through the
    edge over TCP and over WebSocket) with the pod's environment, HOST
    pointed at 127.0.0.1;
  - send the edge SIGTERM (what the kubelet does after the preStop hook) and
    check it exits within the grace period the Deployment gives it.

  - when the edge has an mqtts port, publish and subscribe over TLS too,
    verifying the server certificate against the Secret's ca.crt.

usage: run_render.py RENDER.yaml BIN_DIR WORK_DIR [SECRET=DIR ...]
The render must use free ports (the caller sets them with --set). Each
SECRET=DIR stands for an existing Secret: volumes of that Secret read DIR
(the config's paths under their mountPath are rewritten to DIR), and
secretKeyRef values are read from DIR/<key>.
Prints ok:/FAIL: lines; exit status 1 on any failure.
"""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import yaml

TIERS = ("router", "broker", "edge")
READY = {"edge": "EDGE-READY", "broker": "BRK-READY", "router": "RTR-READY"}
results = []


def check(cond, what):
    results.append((bool(cond), what))
    print(("ok: " if cond else "FAIL: ") + what, flush=True)
    return cond


def wait_for(pred, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


SECRETS = {}


def env_of(container, tier):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for e in container.get("env", []):
        if "value" in e:
            v = e["value"]
        else:
            field = e["valueFrom"].get("fieldRef", {}).get("fieldPath")
            if field == "status.podIP":
                v = "127.0.0.1"
            elif field == "metadata.name":
                v = f"{tier}-0"
            elif "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                with open(os.path.join(SECRETS[ref["name"]], ref["key"])) as f:
                    v = f.read().strip()
            else:
                raise SystemExit(f"{tier}: unsupported env source {e}")
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), v)
    return env


def http_ok(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def tls_pubsub(port, cafile, work, seconds=15):
    """Subscribe and publish over TLS (certificate verified); like the test pod."""
    tls = ["-h", "127.0.0.1", "-p", str(port), "--cafile", cafile, "-q", "1", "-t", "hawser/tls-test"]
    out = open(os.path.join(work, "tls-sub.out"), "w+")
    sub = subprocess.Popen(["mosquitto_sub", *tls, "-C", "1", "-W", str(seconds)], stdout=out,
                           stderr=subprocess.STDOUT)
    deadline = time.monotonic() + seconds
    try:
        while sub.poll() is None and time.monotonic() < deadline:
            subprocess.run(["mosquitto_pub", *tls, "-m", "over-tls"], timeout=5,
                           capture_output=True)
            wait_for(lambda: sub.poll() is not None, 1)
    finally:
        if sub.poll() is None:
            sub.kill()
        sub.wait()
    out.seek(0)
    got = out.read().strip()
    out.close()
    return sub.returncode == 0 and got == "over-tls"


def main(argv):
    render, bindir, work = argv[1], argv[2], argv[3]
    SECRETS.update(a.split("=", 1) for a in argv[4:])
    docs = [d for d in yaml.safe_load_all(open(render)) if d]
    ns = next(d["metadata"]["namespace"] for d in docs if d["kind"] == "ConfigMap")
    cfg = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["hawser.yaml"]
    cfg = re.sub(r"[a-z0-9-]+\." + re.escape(ns) + r"\.svc\.[a-z0-9.-]+?(?=:\d)", "127.0.0.1", cfg)
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for m in spec["containers"][0].get("volumeMounts", []):
            sec = vols[m["name"]].get("secret")
            if sec:
                cfg = cfg.replace(m["mountPath"].rstrip("/") + "/", SECRETS[sec["secretName"]] + "/")
    cfg_path = os.path.join(work, "hawser.yaml")
    with open(cfg_path, "w") as f:
        f.write(cfg)
    deps = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in docs if d["kind"] == "Deployment"}
    pod = next(d for d in docs if d["kind"] == "Pod")

    procs = {}
    try:
        for tier in TIERS:
            c = deps[tier]["spec"]["template"]["spec"]["containers"][0]
            cmd = [os.path.join(bindir, os.path.basename(c["command"][0]))] + [
                cfg_path if a == "/etc/hawser/hawser.yaml" else a for a in c["args"]]
            log = open(os.path.join(work, f"{tier}.log"), "w+")
            procs[tier] = (subprocess.Popen(cmd, env=env_of(c, tier), stdout=log,
                                            stderr=subprocess.STDOUT, cwd=work), log, c)
        for tier in TIERS:
            p, log, c = procs[tier]

            def started():
                log.seek(0)
                return READY[tier] in log.read() or p.poll() is not None
            wait_for(started, 15)
            log.seek(0)
            check(p.poll() is None and READY[tier] in log.read(), f"{tier}: started and logged {READY[tier]}")
            port = next(x["containerPort"] for x in c["ports"] if x["name"] == c["readinessProbe"]["httpGet"]["port"])
            path = c["readinessProbe"]["httpGet"]["path"]
            check(wait_for(lambda: p.poll() is not None or http_ok(port, path), 15) and p.poll() is None,
                  f"{tier}: readinessProbe {path} on :{port} answers 200")
            lpath = c["livenessProbe"]["httpGet"]["path"]
            check(http_ok(port, lpath), f"{tier}: livenessProbe {lpath} answers 200")

        # Every container of the helm test pod (MQTT over TCP with mosquitto
        # clients; MQTT over WebSocket with python3) must succeed.
        for tc in pod["spec"]["containers"]:
            tenv = env_of(tc, "test")
            tenv["HOST"] = "127.0.0.1"
            tenv["TMPDIR"] = work
            r = subprocess.run(tc["command"], env=tenv, capture_output=True, text=True,
                               timeout=int(tenv["DEADLINE"]) + 30)
            check(r.returncode == 0, f"helm test pod, container {tc['name']}: publish/subscribe through the edge"
                  + ("" if r.returncode == 0 else f" (rc {r.returncode}: {r.stdout.strip()} {r.stderr.strip()})"))

        ec = deps["edge"]["spec"]["template"]["spec"]["containers"][0]
        eports = {x["name"]: x["containerPort"] for x in ec["ports"]}
        if "mqtts" in eports:
            tls = next(v["secret"]["secretName"] for v in deps["edge"]["spec"]["template"]["spec"]["volumes"]
                       if v["name"] == "tls")
            check(tls_pubsub(eports["mqtts"], os.path.join(SECRETS[tls], "ca.crt"), work),
                  f"edge: MQTT over TLS on :{eports['mqtts']} with the Secret's certificate")

        p, log, c = procs["edge"]
        grace = deps["edge"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=grace)
            check(rc == 0, f"edge: exits 0 on SIGTERM within its grace period ({time.monotonic() - t0:.1f}s of {grace}s)")
        except subprocess.TimeoutExpired:
            check(False, f"edge: still running {grace}s after SIGTERM")
    finally:
        for tier, (p, log, _) in procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()
    if not all(ok for ok, _ in results):
        for tier in TIERS:
            print(f"--- {tier}.log (tail)")
            with open(os.path.join(work, f"{tier}.log")) as f:
                print("".join(f.readlines()[-15:]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
