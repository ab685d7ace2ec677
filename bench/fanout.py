"""Fan-out over a run-time list: agentchord's map against a plain Celery chord of the same width.

Both run on the same private Redis and the same worker processes, interleaved run by run:

- agentchord: ``plan -> each (map over plan.items, N members) -> join`` with instant agents;
- plain Celery: ``chain(noop, chord([noop] * N, noop_done))``, the canvas a Celery user writes
  for a fan-out whose width is known when the canvas is built (agentchord learns it at run time).

Completion is awaited on a Redis signal for both (agentchord's run end, the canvas's RPUSH).

    python bench/fanout.py --width 500 --runs 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import redis
from celery import chain, chord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    WorkerSpec,
    bench_stack,
    command_counts,
    command_line,
    exit_now,
    percentile,
    print_table,
    write_json,
)
from bench.tasks import fan_out
from coordinator import start
from proj.celery import app
from proj.queues import COORDINATOR_QUEUE


def run_agentchord(width: int) -> float:
    started = time.perf_counter()
    run = start(fan_out(width), input={})
    results = run.wait(timeout=300)
    assert len(results["each"]) == width
    return time.perf_counter() - started


def run_plain(client: redis.Redis, width: int) -> float:
    key = f"bench:done:{uuid.uuid4().hex}"
    noop = app.signature("bench.noop", queue="instant", immutable=True)
    done = app.signature("bench.noop_done", kwargs={"key": key}, queue="instant")
    canvas = chain(noop.clone(), chord([noop.clone() for _ in range(width)], done))
    started = time.perf_counter()
    canvas.apply_async()
    if client.blpop([key], timeout=300) is None:
        raise RuntimeError(f"plain chord of {width} did not finish within 300 s")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--runs", type=int, default=10, help="runs of each kind (after one warm-up each)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", default="bench/results/fanout.json")
    args = parser.parse_args()
    workers = [WorkerSpec(["instant", "fan_planner", COORDINATOR_QUEUE], "bench", args.concurrency)]
    with bench_stack(("bench.tasks",), workers, map_max_items=max(args.width, 1000)) as stack:
        raw = redis.Redis.from_url(stack.settings.resolved_redis_url)
        run_agentchord(args.width)
        run_plain(raw, args.width)
        times: dict[str, list[float]] = {"agentchord": [], "plain Celery": []}
        commands: dict[str, Counter[str]] = {"agentchord": Counter(), "plain Celery": Counter()}
        for _ in range(args.runs):
            for name, once in (("agentchord", lambda: run_agentchord(args.width)),
                               ("plain Celery", lambda: run_plain(raw, args.width))):  # fmt: skip
                before = command_counts(raw)
                times[name].append(once())
                after = command_counts(raw)
                commands[name].update({k: v - before.get(k, 0) for k, v in after.items() if k != "info"})
    rows = []
    for name, values in times.items():
        total = sum(commands[name].values())  # INFO (the readings themselves) left out
        rows.append(
            {
                "system": name,
                "p50_ms": percentile(values, 50) * 1000,
                "max_ms": max(values) * 1000,
                "mean_ms": statistics.fmean(values) * 1000,
                "redis_commands_per_member": total / args.runs / args.width,
            }
        )
    ratio = rows[0]["p50_ms"] / rows[1]["p50_ms"]
    print(f"\nFan-out of {args.width}, instant members, {args.runs} runs each, interleaved; "
          f"{args.concurrency} worker processes\n")  # fmt: skip
    table = [
        [
            r["system"],
            f"{r['p50_ms']:.0f}",
            f"{r['max_ms']:.0f}",
            f"{r['mean_ms']:.0f}",
            f"{r['redis_commands_per_member']:.1f}",
        ]
        for r in rows
    ]
    table.append(["**ratio**", f"**{ratio:.2f}x**", "", "", ""])
    print_table(["system", "P50 ms", "max ms", "mean ms", "Redis commands / member"], table)
    write_json(args.out, {"width": args.width, "runs": args.runs, "rows": rows, "ratio_p50": ratio,
                          "command": command_line()})  # fmt: skip


if __name__ == "__main__":
    main()
    exit_now()
