"""Checks deploy/grafana/hawser.json against the source tree (argv[1]).

Prints "ok: ..." / "FAIL: ..." per check and "N passed, N failed" last;
exits 1 on any failure.
"""

import json
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
DASH = os.path.join(ROOT, "deploy", "grafana", "hawser.json")
REG = re.compile(r'hw_metrics_(counter|gauge|histogram)\s*\(\s*[^,()]+,\s*"(hawser_[a-z0-9_]+)"')
NAME = re.compile(r"\bhawser_[a-z0-9_]+\b")
# What the dashboard must show (issue 6): one metric per area.
REQUIRED = {
    "connections per edge": "hawser_edge_connections",
    "connects": "hawser_edge_connections_accepted_total",
    "closes by cause": "hawser_edge_connections_closed_total",
    "messages in": "hawser_broker_messages_received_total",
    "messages out": "hawser_broker_messages_delivered_total",
    "QoS 0 drops": "hawser_edge_dropped_qos0_total",
    "slow consumers": "hawser_edge_slow_consumer_disconnects_total",
    "broker sessions": "hawser_broker_sessions",
    "broker in-flight": "hawser_broker_inflight_messages",
    "broker queued": "hawser_broker_queued_messages",
    "router acks": "hawser_router_acks_total",
    "router pending": "hawser_router_pending",
    "router timeouts": "hawser_router_ack_timeouts_total",
    "link send-full": "hawser_link_send_full_total",
}

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok: {what}")
    else:
        failed += 1
        print(f"FAIL: {what}")


def registered(root):
    """{name: kind} of every metric registered in services/ and libs/."""
    out = {}
    for top in ("services", "libs"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    with open(os.path.join(d, f), errors="replace") as fh:
                        for kind, name in REG.findall(fh.read()):
                            out[name] = kind
    return out


def unknown(names, reg):
    """The names that are not registered (histogram series suffixes allowed)."""
    bad = []
    for n in sorted(names):
        if n in reg:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        if base != n and reg.get(base) == "histogram":
            continue
        bad.append(n)
    return bad


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


try:
    with open(DASH) as fh:
        dash = json.load(fh)
    check(True, "hawser.json parses as JSON")
except (OSError, ValueError) as e:
    check(False, f"hawser.json parses as JSON: {e}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1)

tvars = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = tvars.get("datasource", {})
check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
      "a Prometheus datasource variable named datasource")

exprs, bad_ds = [], []
for p in panels(dash.get("panels", [])):
    if p.get("type") == "row":
        continue
    for t in p.get("targets", []):
        exprs.append(t.get("expr", ""))
        if (t.get("datasource") or p.get("datasource") or {}).get("uid") != "${datasource}":
            bad_ds.append(p.get("title"))
check(len(exprs) >= 20 and all(exprs), f"{len(exprs)} queries, none empty")
check(not bad_ds, f"every query uses the datasource variable (not: {bad_ds})")
ids = [p.get("id") for p in panels(dash.get("panels", []))]
check(len(ids) == len(set(ids)), "panel ids are unique")

reg = registered(ROOT)
check(len(reg) >= 30, f"{len(reg)} metrics registered in the source")
used = set()
for e in exprs:
    used.update(NAME.findall(e))
bad = unknown(used, reg)
check(not bad, f"all {len(used)} metric names queried are registered (unknown: {bad})")
# The checker itself catches a stale name.
check(unknown({"hawser_edge_no_such_metric_total"}, reg) == ["hawser_edge_no_such_metric_total"],
      "a name that is not registered is reported")
missing = [f"{what} ({m})" for what, m in REQUIRED.items() if m not in used]
check(not missing, f"every required area is on the dashboard (missing: {missing})")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
