"""Scale: Redis memory per finished and per parked run; the coordinator's cost against DAG width and depth.

- memory: ``INFO memory`` used_memory before and after N finished runs of the instant diamond
  and M runs of a one-gate workflow parked at its approval (10,000 by default), per run, with
  a breakdown by key pattern (``MEMORY USAGE ... SAMPLES 0`` of every key, run ids folded to ``*``);
- width: root -> W parallel instant steps -> join, for W = 2, 8, 32, 128;
- depth: a chain of D instant steps, for D = 4, 16, 64.

For each shape, runs go one at a time, alternating with a plain Celery canvas of the same shape
(``chain(noop, chord([noop] * W, noop_done))``, ``chain(noop, ..., noop_done)``) on the same
workers: wall per run, agentchord's overhead per step (``Run.timings()``) and Redis commands per
step (``INFO commandstats`` deltas, as bench/overhead.py counts them).

    python bench/scale.py
    python bench/scale.py --quick
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import chain, chord
from celery.canvas import Signature

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    Stack,
    WorkerSpec,
    bench_stack,
    command_line,
    commands_total,
    exit_now,
    machine,
    median,
    percentile,
    print_table,
    used_memory,
    write_json,
)
from bench.tasks import INSTANT_DIAMOND as DIAMOND
from coordinator import Approval, Run, Step, Workflow, start
from proj.celery import app
from proj.queues import COORDINATOR_QUEUE
from proj.registry import registry_for

QUEUE = "instant"
RUN_TIMEOUT_S = 120
IN_FLIGHT = 20  # finished-run phase: runs submitted and not yet awaited, at most
ONE_GATE = Workflow(name="one_gate", steps=[Step(name="g", approval=Approval())])


@dataclass(frozen=True)
class Config:
    finished: int
    parked: int
    widths: list[tuple[int, int]]  # (width, runs)
    depths: list[tuple[int, int]]  # (depth, runs)


FULL = Config(500, 10_000, [(2, 30), (8, 20), (32, 10), (128, 8)], [(4, 30), (16, 15), (64, 8)])
QUICK = Config(50, 500, [(2, 2), (8, 2), (32, 2), (128, 2)], [(4, 2), (16, 2), (64, 2)])


# -- memory -----------------------------------------------------------------------------------

# A run's keys carry its id as a hash tag ({...}); Celery's carry task ids (run.step for agents).
_RUN_ID = re.compile(r"\{[^}]*\}")
_TASK_META = re.compile(r"^(celery-task-meta-)\S+$")


def key_pattern(key: str) -> str:
    return _TASK_META.sub(r"\1*", _RUN_ID.sub("{*}", key))


def memory_by_pattern(client: redis.Redis) -> tuple[Counter[str], Counter[str]]:
    """(bytes, keys) per key pattern, from MEMORY USAGE of every key (all of its elements)."""
    keys = list(client.scan_iter(count=1000))
    size: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for i in range(0, len(keys), 1000):
        batch = keys[i : i + 1000]
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)  # every element: exact, not a 5-element estimate
            for key, used in zip(batch, pipe.execute(), strict=True):
                size[key_pattern(key)] += used or 0
                count[key_pattern(key)] += 1
    return size, count


@dataclass
class MemoryPoint:
    used: int
    size: Counter[str]
    count: Counter[str]


def memory_point(client: redis.Redis) -> MemoryPoint:
    time.sleep(0.5)  # let the last acks and expiring leases settle
    size, count = memory_by_pattern(client)
    return MemoryPoint(used_memory(client), size, count)


def memory_delta(before: MemoryPoint, after: MemoryPoint, n: int, seconds: float) -> dict[str, Any]:
    patterns = {
        p: {
            "bytes_per_run": (after.size[p] - before.size[p]) / n,
            "keys_per_run": (after.count[p] - before.count[p]) / n,
        }
        for p in after.size | before.size
    }
    changed = {p: v for p, v in patterns.items() if v["keys_per_run"] or abs(v["bytes_per_run"]) >= 1}
    return {
        "runs": n,
        "seconds": round(seconds, 1),
        "used_memory_bytes_per_run": (after.used - before.used) / n,
        "keys_per_run": sum(v["keys_per_run"] for v in changed.values()),
        "by_pattern": dict(sorted(changed.items(), key=lambda item: -item[1]["bytes_per_run"])),
    }


def finished_runs(stack: Stack, n: int) -> dict[str, Any]:
    before = memory_point(stack.client)
    began = time.perf_counter()
    for first in range(0, n, IN_FLIGHT):
        runs = [start(DIAMOND, input={}) for _ in range(min(IN_FLIGHT, n - first))]
        for run in runs:
            run.wait(timeout=RUN_TIMEOUT_S)
    seconds = time.perf_counter() - began
    return memory_delta(before, memory_point(stack.client), n, seconds)


def finished_plain_runs(stack: Stack, n: int) -> dict[str, Any]:
    """The same diamond as a plain Celery canvas (results kept, as the backend keeps them)."""
    before = memory_point(stack.client)
    began = time.perf_counter()
    for first in range(0, n, IN_FLIGHT):
        keys = [f"bench:done:{uuid.uuid4().hex}" for _ in range(min(IN_FLIGHT, n - first))]
        for key in keys:
            done = app.signature("bench.noop_done", kwargs={"key": key}, queue=QUEUE)
            plain_wide(2, done).apply_async()
        for key in keys:
            if stack.client.blpop([key], timeout=RUN_TIMEOUT_S) is None:
                raise RuntimeError(f"plain diamond did not finish within {RUN_TIMEOUT_S}s")
    seconds = time.perf_counter() - began
    return memory_delta(before, memory_point(stack.client), n, seconds)


def parked_runs(stack: Stack, n: int) -> dict[str, Any]:
    registry = registry_for(stack.settings)
    pending_before = stack.client.zcard(registry.keys.pending_approvals)
    before = memory_point(stack.client)
    began = time.perf_counter()
    runs = [start(ONE_GATE, input={}) for _ in range(n)]
    started_s = time.perf_counter() - began
    for run in runs:
        run.wait_for_approval(timeout=RUN_TIMEOUT_S)
    seconds = time.perf_counter() - began
    result = memory_delta(before, memory_point(stack.client), n, seconds)
    result["pending_approvals_added"] = stack.client.zcard(registry.keys.pending_approvals) - pending_before
    result["starts_per_s"] = n / started_s
    return result


# -- width and depth ----------------------------------------------------------------------------


def wide(width: int) -> Workflow:
    middle = [Step(name=f"w{i}", agent="instant", after=["root"]) for i in range(width)]
    join = Step(name="join", agent="instant", after=[s.name for s in middle])
    return Workflow(name=f"wide_{width}", steps=[Step(name="root", agent="instant"), *middle, join])


def deep(depth: int) -> Workflow:
    steps = [Step(name="s0", agent="instant")]
    steps += [Step(name=f"s{i}", agent="instant", after=[f"s{i - 1}"]) for i in range(1, depth)]
    return Workflow(name=f"deep_{depth}", steps=steps)


def noop() -> Signature:
    return app.signature("bench.noop", queue=QUEUE, immutable=True)


def plain_wide(width: int, done: Signature) -> Signature:
    return chain(noop(), chord([noop() for _ in range(width)], done))


def plain_deep(depth: int, done: Signature) -> Signature:
    return chain(*[noop() for _ in range(depth - 1)], done)


def run_agentchord(workflow: Workflow) -> tuple[float, Run]:
    began = time.perf_counter()
    run = start(workflow, input={})
    run.wait(timeout=RUN_TIMEOUT_S)
    return time.perf_counter() - began, run


def run_plain(client: redis.Redis, shape: str, size: int) -> float:
    key = f"bench:done:{uuid.uuid4().hex}"
    done = app.signature("bench.noop_done", kwargs={"key": key}, queue=QUEUE)
    canvas = plain_wide(size, done) if shape == "width" else plain_deep(size, done)
    began = time.perf_counter()
    canvas.apply_async()
    if client.blpop([key], timeout=RUN_TIMEOUT_S) is None:
        raise RuntimeError(f"plain {shape} {size} did not finish within {RUN_TIMEOUT_S}s")
    return time.perf_counter() - began


def measure_shape(stack: Stack, shape: str, size: int, runs: int) -> dict[str, Any]:
    workflow = wide(size) if shape == "width" else deep(size)
    steps = len(workflow.steps)
    run_agentchord(workflow)  # warm-up: first use of this shape
    run_plain(stack.client, shape, size)
    ours: list[float] = []
    plain: list[float] = []
    overheads: list[float] = []
    ours_cmds = plain_cmds = 0
    for _ in range(runs):
        before = commands_total(stack.client)
        wall, run = run_agentchord(workflow)
        middle = commands_total(stack.client)
        plain.append(run_plain(stack.client, shape, size))
        after = commands_total(stack.client)
        ours.append(wall)
        ours_cmds += middle - before - 1  # INFO itself is one command per reading
        plain_cmds += after - middle - 1
        overheads.append(run.timings().overhead_s or 0.0)
    ours_p50, plain_p50 = percentile(ours, 50) * 1000, percentile(plain, 50) * 1000
    return {
        "shape": shape,
        "size": size,
        "steps": steps,
        "runs": runs,
        "agentchord_p50_wall_ms": ours_p50,
        "agentchord_overhead_per_step_ms": median(overheads) * 1000 / steps,
        "agentchord_commands_per_step": ours_cmds / runs / steps,
        "plain_p50_wall_ms": plain_p50,
        "plain_wall_per_step_ms": plain_p50 / steps,
        "plain_commands_per_step": plain_cmds / runs / steps,
        "wall_ratio": ours_p50 / plain_p50,
    }


# -- the benchmark --------------------------------------------------------------------------------


def report_memory(name: str, phase: dict[str, Any], top: int = 8) -> None:
    print(
        f"\n{name}: {phase['runs']} runs in {phase['seconds']} s; used_memory "
        f"**{phase['used_memory_bytes_per_run']:.0f} B/run**, {phase['keys_per_run']:.1f} keys/run\n"
    )
    rows = [
        [f"`{pattern}`", f"{v['keys_per_run']:.2f}", f"{v['bytes_per_run']:.0f}"]
        for pattern, v in list(phase["by_pattern"].items())[:top]
    ]
    print_table(["key pattern (MEMORY USAGE)", "keys / run", "bytes / run"], rows)


def report_shapes(rows: list[dict[str, Any]]) -> None:
    print("\nDAG width (root -> W instant steps -> join) and depth (chain of D instant steps), one run at a time\n")
    headers = [
        "shape", "steps", "runs", "agentchord P50 wall ms", "overhead / step ms (Run.timings)",
        "Redis cmds / step", "plain P50 wall ms", "plain wall / step ms", "plain cmds / step", "wall ratio",
    ]  # fmt: skip
    table = [
        [
            f"{'width' if r['shape'] == 'width' else 'depth'} {r['size']}",
            r["steps"],
            r["runs"],
            f"{r['agentchord_p50_wall_ms']:.1f}",
            f"{r['agentchord_overhead_per_step_ms']:.2f}",
            f"{r['agentchord_commands_per_step']:.1f}",
            f"{r['plain_p50_wall_ms']:.1f}",
            f"{r['plain_wall_per_step_ms']:.2f}",
            f"{r['plain_commands_per_step']:.1f}",
            f"{r['wall_ratio']:.2f}x",
        ]
        for r in rows
    ]
    print_table(headers, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 finished, 500 parked, 2 runs per shape")
    parser.add_argument("--finished", type=int, default=None, help=f"finished runs (default {FULL.finished})")
    parser.add_argument("--parked", type=int, default=None, help=f"parked runs (default {FULL.parked})")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--out", default="bench/results/scale.json")
    args = parser.parse_args()
    config = QUICK if args.quick else FULL
    config = Config(args.finished or config.finished, args.parked or config.parked, config.widths, config.depths)

    began = time.perf_counter()
    spec = WorkerSpec([QUEUE, COORDINATOR_QUEUE], "scale", args.concurrency)
    with bench_stack(("bench.tasks",), [spec]) as stack:
        for _ in range(10):
            run_agentchord(DIAMOND)  # warm-up
        finished = finished_runs(stack, config.finished)
        finished_plain = finished_plain_runs(stack, config.finished)
        parked = parked_runs(stack, config.parked)
        shapes = [measure_shape(stack, "width", w, n) for w, n in config.widths]
        shapes += [measure_shape(stack, "depth", d, n) for d, n in config.depths]
    elapsed = time.perf_counter() - began

    report_memory("Finished runs (instant diamond)", finished)
    report_memory("Finished runs, plain Celery canvas of the same diamond (results kept)", finished_plain)
    ratio = finished["used_memory_bytes_per_run"] / max(finished_plain["used_memory_bytes_per_run"], 1)
    print(f"\nheld per finished run, agentchord / plain Celery: {ratio:.2f}x")
    report_memory("Parked runs (one approval gate)", parked)
    print(f"\n{parked['pending_approvals_added']} pending approvals added; {parked['starts_per_s']:.0f} starts/s")
    report_shapes(shapes)
    print(f"\nelapsed {elapsed:.0f} s")
    write_json(
        args.out,
        {
            "command": command_line(),
            "worker_processes": args.concurrency,
            "elapsed_s": round(elapsed, 1),
            **machine(),
            "finished": finished,
            "finished_plain": finished_plain,
            "finished_ratio": ratio,
            "parked": parked,
            "shapes": shapes,
        },
    )


if __name__ == "__main__":
    main()
    exit_now()
