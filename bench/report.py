#!/usr/bin/env python3
"""bench/report.py: the results of bench/run.sh as JSON, a Markdown table and
the results section of bench/README.md. Standard library only.

    report.py --lines RESULTS.jsonl --meta META.env --out latest.json
        writes latest.json (run metadata, one object per loadgen line in
        "runs", and in "results" one per target, scenario and QoS: with
        several rounds (REPEAT) each metric's median over them) and prints
        the full table (one column per target, then each Hawser
        target's ratio to Mosquitto)
    report.py --from latest.json [--readme bench/README.md]
        prints the table of an existing latest.json; with --readme, replaces
        the part of the README between the bench-results markers with the
        results section (summary table, plots, every metric, the command,
        the commit and the host)
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

BEGIN = "<!-- bench-results:begin"
END = "<!-- bench-results:end -->"

TARGET_ORDER = ["mosquitto", "hawser", "hawser-split", "hawser-redis", "hawser-kafka"]
SCENARIO_ORDER = ["idle", "idle-ws", "fanin", "fanout", "p2p", "p2p-max", "fanin-max", "fanout-max"]
PLOTS = [("throughput.png", "Throughput ceilings (p2p-max, fanin-max, fanout-max: closed loop)"),
         ("latency.png", "Latency at a fixed offered load"),
         ("cpu.png", "Target CPU per delivered message"),
         ("idle.png", "Idle connections: connects/s and memory per connection")]

# What each target is; {redis}, {kafka}, {mosquitto} come from the run's metadata.
TARGETS = {
    "mosquitto": "Mosquitto {mosquitto}: `persistence false`, `set_tcp_nodelay true`, "
                 "one TCP and one WebSocket listener",
    "hawser": "the all-in-one `hawser` (edge, broker and router in one process over "
              "`inproc://`), memory session store, direct routing",
    "hawser-split": "the split tiers: one `hawser-edge`, one `hawser-broker`, one "
                    "`hawser-router`, linked by NNG over loopback TCP; memory store, "
                    "direct routing",
    "hawser-redis": "the all-in-one with `store.backend=redis`: a redis-server {redis} "
                    "started for each run on a free loopback port (`appendonly yes`, "
                    "`appendfsync everysec`, no RDB)",
    "hawser-kafka": "the all-in-one with `router.mode=kafka`: every topic through one "
                    "`publish_consume` pipeline (publish → Kafka, acks=all → the router's "
                    "consumer → subscribers), a fresh topic (4 partitions) and consumer "
                    "group per run, on a single-node Apache Kafka {kafka} (KRaft, "
                    "`scripts/kafka.sh`)",
}

# (label, key, summary?) per kind of scenario; keys ending in "+" add the
# dependencies' (aux_*) share to the target's.
IDLE_METRICS = [
    ("connects/s", "connects_per_s", True),
    ("RSS/conn (B)", "rss_per_conn_bytes", True),
    ("RSS/conn + Redis/Kafka (B)", "rss_per_conn_bytes+", True),
    ("connects/s of each round", "cps_rounds", True),
    ("CPU/conn (us)", "cpu_us_per_conn", False),
    ("CPU/conn + Redis/Kafka (us)", "cpu_us_per_conn+", False),
    ("target CPU %", "target_cpu_pct", False),
    ("Redis/Kafka CPU %", "aux_cpu_pct", False),
    ("other processes CPU %", "others_cpu_pct", False),
]
PUB_METRICS = [
    ("deliveries/s", "msgs_per_s", True),
    ("lost", "lost", False),
    ("dropped at queue bound", "queue_dropped", False),
    ("p50 (us)", "p50_us", True),
    ("p99 (us)", "p99_us", True),
    ("p99 of each round (us)", "p99_rounds", True),
    ("max (us)", "max_us", False),
    ("CPU/delivery (us)", "cpu_us_per_msg", True),
    ("CPU/delivery + Redis/Kafka (us)", "cpu_us_per_msg+", True),
    ("target CPU %", "target_cpu_pct", False),
    ("Redis/Kafka CPU %", "aux_cpu_pct", False),
    ("loadgen CPU %", "loadgen_cpu_pct", False),
    ("other processes CPU %", "others_cpu_pct", False),
]
NO_RATIO = {"lost", "queue_dropped", "aux_cpu_pct", "others_cpu_pct", "loadgen_cpu_pct",
            "p99_rounds", "cps_rounds"}
# Summed over rounds rather than their median: a loss in any round shows.
SUMMED = {"lost", "queue_dropped", "sent", "received", "expected", "dup", "failed", "dropped"}


def merge_rounds(runs):
    """One result per (scenario, qos, target): a lone run as it is; for
    several rounds, each numeric metric's median over the rounds that have
    a result (SUMMED ones added up), and every round's p99 in p99_rounds
    (connects/s in cps_rounds for idle ones; "error" for a round without a
    result)."""
    groups = {}
    for r in runs:
        groups.setdefault((r["scenario"], r.get("qos", 0), r["target"]), []).append(r)
    out = []
    for group in groups.values():
        ok = [r for r in group if "error" not in r]
        if len(group) == 1 or not ok:
            out.append({k: v for k, v in group[0].items() if k != "round"})
            continue
        m = {k: v for k, v in ok[0].items() if k != "round"}
        for k, v in ok[0].items():
            vals = [r.get(k) for r in ok]
            if k == "round" or isinstance(v, bool) or \
                    not all(isinstance(x, (int, float)) for x in vals):
                continue
            if k in SUMMED:
                m[k] = sum(vals)
            elif any(x != vals[0] for x in vals): # settings (qos, conns...) stay as they are
                m[k] = statistics.median(vals)
        m["rounds"] = len(group)
        key, each = (("cps_rounds", "connects_per_s") if group[0]["scenario"].startswith("idle")
                     else ("p99_rounds", "p99_us"))
        m[key] = [r.get(each) if "error" not in r else "error" for r in group]
        out.append(m)
    return out


def read_meta(path):
    meta, knobs = {}, {}
    with open(path) as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if not sep:
                continue
            if k.startswith("knob."):
                knobs[k[5:]] = v
            else:
                meta[k] = v
    return meta, knobs


def build_doc(lines_path, meta_path):
    rows = [json.loads(l) for l in open(lines_path) if l.strip()]
    meta, knobs = read_meta(meta_path)
    started = meta.get("started", "")
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        t0 = time.mktime(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))
        t1 = time.mktime(time.strptime(finished, "%Y-%m-%dT%H:%M:%SZ"))
        elapsed = int(t1 - t0)
    except ValueError:
        elapsed = None
    mem_kb = next((int(l.split()[1]) for l in open("/proc/meminfo")
                   if l.startswith("MemTotal:")), 0)
    return {
        "date": finished,
        "started": started,
        "finished": finished,
        "elapsed_s": elapsed,
        "command": meta.get("command", ""),
        "commit": meta.get("commit", ""),
        "dirty_files": int(meta.get("dirty", "0") or 0),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                              if l.startswith("model name")), "?"),
                 "mem_mb": mem_kb // 1024,
                 "loadavg_start": meta.get("loadavg_start", ""),
                 "loadavg_end": meta.get("loadavg_end", "")},
        "versions": {k: meta.get(k, "") for k in ("mosquitto", "redis", "kafka")},
        "build": {"dir": meta.get("build_dir", ""), "type": meta.get("build_type", ""),
                  "sanitizer": meta.get("sanitizer", ""), "allocator": meta.get("allocator", "")},
        "settings": knobs,
        "results": merge_rounds(rows),
        "runs": rows,
    }


def value(r, key):
    if key.endswith("+"):
        base = r.get(key[:-1])
        if base is None:
            return None
        return base + (r.get("aux_" + key[:-1]) or 0)
    return r.get(key)


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, list):
        return " / ".join(fmt(x) for x in v)
    if isinstance(v, str):
        return v
    return f"{v:.1f}" if abs(v) < 100 and v != int(v) else f"{v:,.0f}"


def ordered(items, order):
    return sorted(items, key=lambda x: (order.index(x) if x in order else len(order), items.index(x)))


def table(doc, summary=False):
    """The Markdown table: a row per (scenario, qos, metric), a column per
    target, then one ratio column per Hawser target (to Mosquitto)."""
    rows = doc["results"]
    targets = ordered(list(dict.fromkeys(r["target"] for r in rows)), TARGET_ORDER)
    keys = list(dict.fromkeys((r["scenario"], r.get("qos", 0)) for r in rows))
    keys.sort(key=lambda k: (SCENARIO_ORDER.index(k[0]) if k[0] in SCENARIO_ORDER
                             else len(SCENARIO_ORDER), k[1]))
    by = {(r["scenario"], r.get("qos", 0), r["target"]): r for r in rows}
    has_aux = any("aux_cpu_s" in r for r in rows)
    rounds_of = {(r["scenario"], r.get("qos", 0)) for r in rows
                 if "p99_rounds" in r or "cps_rounds" in r}
    ratios = [t for t in targets if t != "mosquitto"] if "mosquitto" in targets else []

    head = ["scenario", "qos", "metric"] + targets + [f"{t}/mosquitto" for t in ratios]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scen, qos in keys:
        for label, key, in_summary in (IDLE_METRICS if scen.startswith("idle") else PUB_METRICS):
            if summary and not in_summary:
                continue
            if not has_aux and ("+" in key or key.startswith("aux_")):
                continue
            if key.endswith("_rounds") and (scen, qos) not in rounds_of:
                continue
            cells = [scen, str(qos), label]
            vals = {}
            for t in targets:
                r = by.get((scen, qos, t))
                if r is None:
                    cells.append("-")
                elif "error" in r:
                    cells.append(r["error"])
                elif r.get("ready", 0) < r.get("conns", 0):
                    cells.append(f"{r.get('failed', 0)} conns failed")
                else:
                    vals[t] = value(r, key)
                    cells.append(fmt(vals[t]))
            for t in ratios:
                m, h = vals.get("mosquitto"), vals.get(t)
                ok = key not in NO_RATIO and m and h is not None
                cells.append(f"{h / m:.2f}" if ok else "-")
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def readme_section(doc, readme_dir, results_dir):
    v = doc.get("versions", {})
    host = doc.get("host", {})
    b = doc.get("build", {})
    s = doc.get("settings", {})
    targets = ordered(list(dict.fromkeys(r["target"] for r in doc["results"])), TARGET_ORDER)
    elapsed = doc.get("elapsed_s")
    dirty = doc.get("dirty_files", 0)
    commit = doc.get("commit", "?")
    lines = [
        f"{BEGIN} (generated by `bench/report.py` from `bench/results/latest.json`; "
        "edits inside are overwritten) -->",
        "## Latest results",
        "",
        "Command (from the repository root):",
        "",
        "```sh",
        doc.get("command", "?"),
        "```",
        "",
        f"- **When**: {doc.get('started', '?')} → {doc.get('finished', '?')}"
        + (f" ({elapsed // 60} min {elapsed % 60} s for the whole command)" if elapsed is not None else ""),
        f"- **Tree**: commit `{commit[:12]}`"
        + (f" with {dirty} tracked file(s) modified" if dirty else " (clean)")
        + f"; `{os.path.basename(b.get('dir', '') or '?')}`, a {b.get('type') or '?'} build"
        + (f" with HAWSER_SANITIZER={b['sanitizer']}" if b.get("sanitizer") else "")
        + (f", malloc: {b['allocator']}" if b.get("allocator") else ""),
        f"- **Host**: {host.get('cpus', '?')} × {host.get('cpu', '?')}, "
        f"{host.get('mem_mb', '?')} MB, kernel {host.get('kernel', '?')}; load average "
        f"{host.get('loadavg_start', '?')} at the start, {host.get('loadavg_end', '?')} at the end",
        f"- **Pinning**: every process of a target on core {s.get('TARGET_CPU', '?')} "
        f"(redis-server on core {s.get('REDIS_CPU', '?')}, Kafka on core {s.get('KAFKA_CPU', '?')}), "
        f"`loadgen` on core {s.get('LOADGEN_CPU', '?')}",
        f"- **Load**: MQTT {s.get('MQTT', '?')}, {s.get('SIZE', '?')}-byte payloads, "
        f"{s.get('DURATION', '?')} s per run; idle {s.get('IDLE_CONNS', '?')} conns; "
        f"fanin {s.get('FANIN_PUBS', '?')} publishers at {s.get('FANIN_RATE', '?')}/s; "
        f"fanout {s.get('FANOUT_SUBS', '?')} subscribers, {s.get('FANOUT_RATE', '?')} publishes/s; "
        f"p2p {s.get('P2P_PAIRS', '?')} pairs at {s.get('P2P_RATE', '?')}/s; p2p-max "
        f"{s.get('MAX_PAIRS', '?')} pairs × {s.get('MAX_WINDOW', '?')} in flight; fanin-max and "
        f"fanout-max the fanin and fanout connections, {s.get('MAX_WINDOW', '?')} in flight per publisher "
        f"(transport {s.get('TRANSPORT', '?')}; `idle-ws` is idle over WebSocket)",
    ]
    rounds = int(s.get("REPEAT", "1") or 1)
    if rounds > 1:
        lines.append(f"- **Rounds**: idle, idle-ws, fanin, fanout and p2p ran {rounds} times "
                     "over every target, round after round (the `-max` ceilings once); their "
                     "rows give each metric's median over the rounds (losses added up) and, in "
                     "\"p99 of each round\" and \"connects/s of each round\", every round's "
                     "figure")
    lines += [
        "- **Targets**:",
    ]
    for t in targets:
        desc = TARGETS.get(t, t).format(mosquitto=v.get("mosquitto", ""), redis=v.get("redis", ""),
                                         kafka=v.get("kafka", ""))
        lines.append(f"  - `{t}`: {desc}")
    lines += [
        "",
        "Ratios are target / Mosquitto (below 1 is less: better for latency, CPU and "
        "memory, worse for throughput). \"+ Redis/Kafka\" adds the CPU or memory of the "
        "redis-server or Kafka JVM the target used, measured over the same phase; for "
        "the other targets it equals the row above it. CPU per delivery is the sum over "
        "every process of the target (the split tiers: edge + broker + router).",
        "",
        "### Summary",
        "",
        table(doc, summary=True),
        "",
    ]
    plots = [(f, t) for f, t in PLOTS if os.path.exists(os.path.join(results_dir, f))]
    if plots:
        lines += ["### Plots", ""]
        rel = os.path.relpath(results_dir, readme_dir)
        for f, title in plots:
            lines += [f"![{title}]({rel}/{f})", ""]
    lines += [
        "<details><summary>Every metric of the run</summary>",
        "",
        table(doc),
        "",
        "</details>",
        END,
    ]
    return "\n".join(lines)


def update_readme(path, section):
    text = open(path).read()
    a = text.find(BEGIN)
    z = text.find(END)
    if a < 0 or z < a:
        sys.exit(f"report.py: {path} has no '{BEGIN} ... {END}' section")
    text = text[:a] + section + text[z + len(END):]
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines")
    ap.add_argument("--meta")
    ap.add_argument("--out")
    ap.add_argument("--from", dest="src")
    ap.add_argument("--readme")
    a = ap.parse_args()
    if a.src:
        doc = json.load(open(a.src))
    elif a.lines and a.meta and a.out:
        doc = build_doc(a.lines, a.meta)
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    else:
        ap.error("--lines, --meta and --out, or --from")
    if a.readme:
        results_dir = os.path.dirname(os.path.abspath(a.src or a.out))
        update_readme(a.readme, readme_section(doc, os.path.dirname(os.path.abspath(a.readme)),
                                               results_dir))
        return
    print(table(doc))
    if a.out:
        print(f"\n(results: {a.out})")


if __name__ == "__main__":
    main()
