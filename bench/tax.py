"""Coordination tax with simulated model latency: the diamond, agentchord vs plain Celery.

Each agent sleeps ``latency`` (a model call); the critical path is review -> tests|docs ->
merge, three latencies. Overhead = wall - 3 x latency, for both systems:

- agentchord: the diamond of ``sleepy`` agents, started with ``coordinator.start`` and awaited
  with ``Run.wait``;
- plain Celery: ``chain(sleep, chord([sleep, sleep], sleep_done))``, awaited on the RPUSH of its
  last task.

At each concurrency level, rounds of N runs of one system start together, alternating with
rounds of the other on the same threads-pool workers and the same private Redis, so the
ratio is measured under the same noise. agentchord's own accounting (``Run.timings()``:
overhead from the server clock, tax ratio = overhead / wall) is printed beside it.

    python bench/tax.py            # 200 ms at 1, 10, 100 concurrent runs; 500 ms at 1 and 10
    python bench/tax.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery import chain, chord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    Stack,
    WorkerSpec,
    bench_stack,
    command_line,
    exit_now,
    machine,
    median,
    percentile,
    print_table,
    write_json,
)
from bench.tax_tasks import SLEEPY_QUEUE
from coordinator import Run, Step, Workflow, start
from proj.celery import app
from proj.queues import COORDINATOR_QUEUE

# Product goal: at >= 500 ms per agent, overhead within 1.3x of plain Celery's and under 2% of wall.
GOAL_LATENCY_MS = 500
GOAL_RATIO = 1.3
GOAL_SHARE = 0.02
RUN_TIMEOUT_S = 120
T = TypeVar("T")


@dataclass(frozen=True)
class Level:
    latency_ms: float
    concurrent: int
    rounds: int


FULL = [Level(200, 1, 30), Level(200, 10, 5), Level(200, 100, 3), Level(500, 1, 12), Level(500, 10, 4)]
QUICK = [Level(200, 1, 3), Level(200, 10, 1), Level(200, 100, 1), Level(500, 1, 2), Level(500, 10, 1)]


@dataclass
class Samples:
    ours: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


def diamond(latency_ms: float) -> Workflow:
    params: dict[str, Any] = {"latency_ms": latency_ms}
    return Workflow(
        name="sleepy_diamond",
        steps=[
            Step(name="review", agent="sleepy", params=params),
            Step(name="tests", agent="sleepy", params=params, after=["review"]),
            Step(name="docs", agent="sleepy", params=params, after=["review"]),
            Step(name="merge", agent="sleepy", params=params, after=["tests", "docs"]),
        ],
    )


def run_agentchord(workflow: Workflow) -> tuple[float, Run]:
    started = time.perf_counter()
    run = start(workflow, input={})
    run.wait(timeout=RUN_TIMEOUT_S)
    return time.perf_counter() - started, run


def run_plain(client: redis.Redis, latency_ms: float) -> float:
    seconds = latency_ms / 1000
    key = f"bench:done:{uuid.uuid4().hex}"
    sleep = app.signature("bench.sleep", kwargs={"seconds": seconds}, queue=SLEEPY_QUEUE, immutable=True)
    done = app.signature("bench.sleep_done", kwargs={"key": key, "seconds": seconds}, queue=SLEEPY_QUEUE)
    canvas = chain(sleep.clone(), chord([sleep.clone(), sleep.clone()], done))
    started = time.perf_counter()
    canvas.apply_async()
    if client.blpop([key], timeout=RUN_TIMEOUT_S) is None:
        raise RuntimeError(f"plain canvas did not finish within {RUN_TIMEOUT_S}s")
    return time.perf_counter() - started


def together(n: int, one: Callable[[], T]) -> list[T]:
    """``n`` calls of ``one`` started at once, each on its own thread."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one) for _ in range(n)]
        return [f.result() for f in futures]


def measure(stack: Stack, level: Level) -> Samples:
    workflow = diamond(level.latency_ms)
    samples = Samples()
    for _ in range(level.rounds):
        for wall, run in together(level.concurrent, lambda: run_agentchord(workflow)):
            samples.ours.append(wall)
            samples.runs.append(run)
        samples.plain += together(level.concurrent, lambda: run_plain(stack.client, level.latency_ms))
    return samples


def summarise(level: Level, samples: Samples) -> dict[str, Any]:
    critical_ms = 3 * level.latency_ms
    ours_ms = percentile(samples.ours, 50) * 1000
    plain_ms = percentile(samples.plain, 50) * 1000
    ours_over, plain_over = ours_ms - critical_ms, plain_ms - critical_ms
    timings = [run.timings() for run in samples.runs]
    row: dict[str, Any] = {
        "latency_ms": level.latency_ms,
        "concurrent": level.concurrent,
        "runs_each": len(samples.ours),
        "critical_path_ms": critical_ms,
        "agentchord_p50_wall_ms": ours_ms,
        "plain_p50_wall_ms": plain_ms,
        "agentchord_p99_wall_ms": percentile(samples.ours, 99) * 1000,
        "plain_p99_wall_ms": percentile(samples.plain, 99) * 1000,
        "agentchord_overhead_ms": ours_over,
        "plain_overhead_ms": plain_over,
        "agentchord_overhead_share": ours_over / ours_ms,
        "plain_overhead_share": plain_over / plain_ms,
        "overhead_ratio": ours_over / plain_over if plain_over > 0 else None,
        "run_timings_overhead_ms": median([t.overhead_s or 0.0 for t in timings]) * 1000,
        "run_timings_tax_ratio": median([t.tax_ratio or 0.0 for t in timings]),
    }
    if level.latency_ms >= GOAL_LATENCY_MS:
        ratio = row["overhead_ratio"]
        row["goal_ratio_met"] = ratio is not None and ratio <= GOAL_RATIO
        row["goal_share_met"] = row["agentchord_overhead_share"] < GOAL_SHARE
    return row


def warm_up(stack: Stack, concurrent: int) -> None:
    """Open connections and start pool threads on both sides before anything is timed."""
    workflow = diamond(20)
    for _ in range(3):
        run_agentchord(workflow)
        run_plain(stack.client, 20)
    together(concurrent, lambda: run_agentchord(workflow))
    together(concurrent, lambda: run_plain(stack.client, 20))


def goal_cell(row: dict[str, Any]) -> str:
    if "goal_ratio_met" not in row:
        return ""
    ratio = "ratio ok" if row["goal_ratio_met"] else "ratio MISSED"
    share = "<2% ok" if row["goal_share_met"] else ">=2% MISSED"
    return f"{ratio}, {share}"


def report(rows: list[dict[str, Any]], workers: int, threads: int) -> None:
    print(
        f"\nDiamond of simulated-latency agents; {workers} threads-pool workers x {threads} threads; "
        "rounds of N concurrent runs, agentchord and plain Celery alternating\n"
    )
    headers = [
        "latency ms", "concurrent", "runs each", "agentchord P50 wall ms", "plain P50 wall ms",
        "agentchord overhead ms (% wall)", "plain overhead ms (% wall)", "overhead ratio",
        "Run.timings overhead ms", "Run.timings tax_ratio", "goal (>=500 ms: <=1.3x, <2%)",
    ]  # fmt: skip
    table = []
    for r in rows:
        ratio = r["overhead_ratio"]
        table.append(
            [
                f"{r['latency_ms']:g}",
                r["concurrent"],
                r["runs_each"],
                f"{r['agentchord_p50_wall_ms']:.1f}",
                f"{r['plain_p50_wall_ms']:.1f}",
                f"{r['agentchord_overhead_ms']:.1f} ({r['agentchord_overhead_share']:.1%})",
                f"{r['plain_overhead_ms']:.1f} ({r['plain_overhead_share']:.1%})",
                f"**{ratio:.2f}x**" if ratio is not None else "n/a",
                f"{r['run_timings_overhead_ms']:.1f}",
                f"{r['run_timings_tax_ratio']:.2%}",
                goal_cell(r),
            ]
        )
    print_table(headers, table, align="r" * len(headers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one or two rounds per level (~30 s)")
    parser.add_argument("--workers", type=int, default=2, help="threads-pool worker processes")
    parser.add_argument("--threads", type=int, default=110, help="threads per worker")
    parser.add_argument("--out", default="bench/results/tax.json")
    parser.add_argument("--log-dir", type=Path, default=None, help="write worker logs here")
    args = parser.parse_args()
    levels = QUICK if args.quick else FULL

    queues = [SLEEPY_QUEUE, COORDINATOR_QUEUE]
    specs = [WorkerSpec(queues, f"tax{i}", args.threads, "threads") for i in range(args.workers)]
    began = time.perf_counter()
    with bench_stack(("bench.tax_tasks",), specs, args.log_dir) as stack:
        warm_up(stack, max(level.concurrent for level in levels))
        rows = [summarise(level, measure(stack, level)) for level in levels]
    elapsed = time.perf_counter() - began

    report(rows, args.workers, args.threads)
    print(f"\nelapsed {elapsed:.0f} s")
    write_json(
        args.out,
        {
            "command": command_line(),
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "elapsed_s": round(elapsed, 1),
            **machine(),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
    exit_now()
