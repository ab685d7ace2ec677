"""PNG plots for docs/benchmarks.md from bench/results/*.json (throughput and DAG-shape curves).

python bench/plots.py        # after bench/throughput.py and bench/scale.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

RESULTS = Path("bench/results")
DOCS = Path("docs")


def throughput_plot() -> Path:
    data = json.loads((RESULTS / "throughput.json").read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rows = data["saturation"]
    processes = [r["processes"] for r in rows]
    left.plot(processes, [r["agentchord_per_min"] for r in rows], "o-", label="agentchord")
    left.plot(processes, [r["plain_per_min"] for r in rows], "s--", label="plain Celery canvas")
    left.set(xlabel="worker processes", ylabel="diamond workflows / min", title="Saturation throughput")
    left.set_xticks(processes)
    left.legend()
    load = data["latency_under_load"]
    offered = [r["offered_per_min"] for r in load]
    right.plot(offered, [r["agentchord_p99_ms"] for r in load], "o-", label="agentchord P99")
    right.plot(offered, [r["plain_p99_ms"] for r in load], "s--", label="plain Celery P99")
    right.set(xlabel="offered load (workflows / min)", ylabel="latency P99 (ms)", title="Latency under load")
    right.legend()
    fig.tight_layout()
    out = DOCS / "throughput.png"
    fig.savefig(out, dpi=110)
    return out


def shape_plot() -> Path:
    data = json.loads((RESULTS / "scale.json").read_text())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, shape, label in ((axes[0], "width", "fan-out width"), (axes[1], "depth", "chain depth")):
        rows = [r for r in data["shapes"] if r["shape"] == shape]
        sizes = [r["size"] for r in rows]
        axis.plot(sizes, [r["agentchord_p50_wall_ms"] for r in rows], "o-", label="agentchord P50 wall")
        axis.plot(sizes, [r["plain_p50_wall_ms"] for r in rows], "s--", label="plain Celery P50 wall")
        axis.set(xscale="log", xlabel=label, ylabel="ms per run", title=f"Coordinator cost vs {label}")
        axis.set_xticks(sizes, [str(s) for s in sizes])
        axis.minorticks_off()
        axis.legend()
    fig.tight_layout()
    out = DOCS / "dag_shapes.png"
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    DOCS.mkdir(exist_ok=True)
    for path in (throughput_plot(), shape_plot()):
        print(f"wrote {path}")
