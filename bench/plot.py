#!/usr/bin/env python3
"""bench/plot.py LATEST_JSON OUT_DIR: the plots of a bench/run.sh result
(bench/results/latest.json) as PNG files in OUT_DIR:

- throughput.png  closed-loop deliveries/s per target (p2p-max, fanin-max, fanout-max)
- latency.png     p50 and p99 delivery latency of the fixed-rate scenarios
- cpu.png         target CPU per delivery per scenario, Redis/Kafka on top
- idle.png        connects/s and RSS per idle connection, TCP and WebSocket

A plot whose scenarios did not run is not written (an old one is removed).
Needs matplotlib (bench/requirements.txt; bench/run.sh installs it).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGET_ORDER = ["mosquitto", "hawser", "hawser-split", "hawser-redis", "hawser-kafka"]
COLORS = {"mosquitto": "#7f7f7f", "hawser": "#1f77b4", "hawser-split": "#2ca02c",
          "hawser-redis": "#d62728", "hawser-kafka": "#9467bd"}


def ok(r):
    return r is not None and "error" not in r and r.get("ready", 0) >= r.get("conns", 0)


def grouped(ax, groups, targets, get, aux=None, log=False, ylabel=""):
    """Bars: one group per (scenario, qos) label, one bar per target;
    aux(r) is stacked on top, hatched."""
    n = len(targets)
    width = 0.8 / max(n, 1)
    for i, t in enumerate(targets):
        xs, ys, tops = [], [], []
        for g, (label, rows) in enumerate(groups):
            r = rows.get(t)
            if not ok(r):
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(get(r) or 0)
            tops.append(aux(r) if aux else 0)
        if not xs:
            continue
        ax.bar(xs, ys, width, label=t, color=COLORS.get(t))
        if aux and any(tops):
            ax.bar(xs, tops, width, bottom=ys, color=COLORS.get(t), alpha=0.45, hatch="//",
                   label=f"{t}: Redis/Kafka")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[0] for g in groups])
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def collect(doc, scenarios):
    groups = {}
    for r in doc["results"]:
        if r["scenario"] in scenarios:
            label = f"{r['scenario']}\nQoS {r.get('qos', 0)}" if not r["scenario"].startswith("idle") \
                else r["scenario"]
            groups.setdefault((scenarios.index(r["scenario"]), r.get("qos", 0), label), {})[r["target"]] = r
    return [(k[2], v) for k, v in sorted(groups.items())]


def save(fig, path, title, doc):
    fig.suptitle(title)
    fig.text(0.01, 0.005, f"{doc.get('started', '')}  commit {doc.get('commit', '')[:10]}  "
             f"{doc.get('host', {}).get('cpus', '?')} × {doc.get('host', {}).get('cpu', '?')}",
             fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot.py: wrote {path}", file=sys.stderr)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    doc = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    present = list(dict.fromkeys(r["target"] for r in doc["results"]))
    targets = [t for t in TARGET_ORDER if t in present] + [t for t in present if t not in TARGET_ORDER]
    plots = {}

    g = collect(doc, ["p2p-max", "fanin-max", "fanout-max"])
    if g:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        grouped(ax, g, targets, lambda r: r.get("msgs_per_s"), ylabel="deliveries/s")
        ax.legend(fontsize=8)
        plots["throughput.png"] = (fig, "Throughput ceilings: closed-loop deliveries/s (higher is better)")

    g = collect(doc, ["fanin", "fanout", "p2p"])
    if g:
        fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
        grouped(axes[0], g, targets, lambda r: r.get("p50_us"), log=True, ylabel="p50 (µs)")
        grouped(axes[1], g, targets, lambda r: r.get("p99_us"), log=True, ylabel="p99 (µs)")
        axes[0].legend(fontsize=8, ncol=len(targets))
        plots["latency.png"] = (fig, "Publish-to-delivery latency at a fixed offered load (lower is better)")

    g = collect(doc, ["fanin", "fanout", "p2p", "p2p-max", "fanin-max", "fanout-max"])
    if g:
        fig, ax = plt.subplots(figsize=(11, 4.5))
        grouped(ax, g, targets, lambda r: r.get("cpu_us_per_msg"),
                aux=lambda r: r.get("aux_cpu_us_per_msg", 0), ylabel="CPU µs per delivery")
        ax.legend(fontsize=7, ncol=3)
        plots["cpu.png"] = (fig, "CPU time per delivered message, all target processes (lower is better)")

    g = collect(doc, ["idle", "idle-ws"])
    if g:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
        grouped(axes[0], g, targets, lambda r: r.get("connects_per_s"), ylabel="connects/s")
        grouped(axes[1], g, targets, lambda r: r.get("rss_per_conn_bytes"),
                aux=lambda r: r.get("aux_rss_per_conn_bytes", 0), ylabel="RSS bytes per connection")
        axes[0].set_title("connects/s (higher is better)", fontsize=9)
        axes[1].set_title("RSS per idle connection (lower is better)", fontsize=9)
        axes[1].legend(fontsize=7)
        plots["idle.png"] = (fig, f"{doc.get('settings', {}).get('IDLE_CONNS', '?')} idle connections")

    for name in ("throughput.png", "latency.png", "cpu.png", "idle.png"):
        path = os.path.join(out, name)
        if name in plots:
            fig, title = plots[name]
            save(fig, path, title, doc)
        elif os.path.exists(path):
            os.remove(path)


if __name__ == "__main__":
    main()
