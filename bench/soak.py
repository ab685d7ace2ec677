"""Soak: a long stream of instant diamonds through one worker; its memory (RSS) and Redis's.

Two phases on the same private Redis, each with a fresh worker (one prefork worker, 2 processes):
agentchord's diamond, then the same diamond as a plain Celery canvas. Each phase warms up, reads
the RSS of the worker's main process and of each pool child, streams N runs (at most 20 in
flight), and reads them again: the growth per 1,000 runs per process is the figure to watch
(a leak shows as steady growth; allocator warm-up as a step at the start). Redis ``used_memory``
growth per run retained is printed beside it.

    python bench/soak.py --runs 5000
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from celery import chain, chord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    Stack,
    WorkerSpec,
    bench_stack,
    command_line,
    exit_now,
    machine,
    print_table,
    used_memory,
    write_json,
)
from bench.tasks import INSTANT_DIAMOND
from coordinator import start
from coordinator.interfaces.stack import WorkerProcess
from proj.celery import app

IN_FLIGHT = 20
WARMUP = 300


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rss_of(worker: WorkerProcess) -> dict[str, int]:
    """RSS (KiB) of the worker's main process and of each pool child, by role."""
    assert worker.pid is not None
    readings = {"main": rss_kib(worker.pid)}
    for i, pid in enumerate(sorted(worker.child_pids())):
        readings[f"child {i + 1}"] = rss_kib(pid)
    return readings


def agentchord_batch(stack: Stack, n: int) -> None:
    runs = [start(INSTANT_DIAMOND, input={}) for _ in range(n)]
    for run in runs:
        run.wait(timeout=120)


def plain_batch(stack: Stack, n: int) -> None:
    keys = [f"bench:done:{uuid.uuid4().hex}" for _ in range(n)]
    noop = app.signature("bench.noop", queue="instant", immutable=True)
    for key in keys:
        done = app.signature("bench.noop_done", kwargs={"key": key}, queue="instant")
        chain(noop.clone(), chord([noop.clone(), noop.clone()], done)).apply_async()
    for key in keys:
        if stack.client.blpop([key], timeout=120) is None:
            raise RuntimeError("plain diamond did not finish within 120 s")


def soak(stack: Stack, name: str, batch: Any, runs: int) -> dict[str, Any]:
    stack.start_workers([WorkerSpec(["instant", "coordinator"], f"soak-{name}", 2)])
    worker = stack.workers[0]
    for done in range(0, WARMUP, IN_FLIGHT):
        batch(stack, min(IN_FLIGHT, WARMUP - done))
    before, memory_before, began = rss_of(worker), used_memory(stack.client), time.perf_counter()
    for done in range(0, runs, IN_FLIGHT):
        batch(stack, min(IN_FLIGHT, runs - done))
    seconds = time.perf_counter() - began
    time.sleep(0.5)  # let the last acks land
    after, memory_after = rss_of(worker), used_memory(stack.client)
    growth = {proc: (after.get(proc, 0) - kib) / (runs / 1000) for proc, kib in before.items()}
    return {
        "system": name,
        "runs": runs,
        "seconds": round(seconds, 1),
        "rss_kib_before": before,
        "rss_kib_after": after,
        "rss_growth_kib_per_1000_runs": growth,
        "redis_used_memory_bytes_per_run": (memory_after - memory_before) / runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--out", default="bench/results/soak.json")
    args = parser.parse_args()
    with bench_stack(("bench.tasks",)) as stack:
        results = [
            soak(stack, "agentchord", agentchord_batch, args.runs),
            soak(stack, "plain Celery", plain_batch, args.runs),
        ]
    rows = []
    for result in results:
        for proc, kib in result["rss_kib_before"].items():
            rows.append(
                [
                    result["system"],
                    proc,
                    f"{kib / 1024:.1f}",
                    f"{result['rss_kib_after'].get(proc, 0) / 1024:.1f}",
                    f"{result['rss_growth_kib_per_1000_runs'][proc] / 1024:.2f}",
                ]
            )
    print(f"\n{args.runs} instant diamonds through one worker (2 pool processes), after {WARMUP} warm-up runs\n")
    print_table(["system", "process", "RSS before MiB", "RSS after MiB", "growth MiB / 1,000 runs"], rows)
    for result in results:
        print(
            f"\n{result['system']}: {result['seconds']} s; Redis used_memory "
            f"{result['redis_used_memory_bytes_per_run']:.0f} B per run retained"
        )
    write_json(args.out, {"command": command_line(), **machine(), "results": results})


if __name__ == "__main__":
    main()
    exit_now()
