"""Throughput at saturation and latency under load: the instant diamond, agentchord vs plain Celery.

Saturation: a batch of runs is submitted as fast as the client can, and throughput is the
batch over the time from the first submission to the last run's finish; with 1, 2 and 4
worker processes (prefork) consuming the agent and coordinator queues. agentchord's diamond of
``instant`` agents and ``chain(noop, chord([noop, noop], noop_done_at))`` alternate, batch by
batch, on the same workers and the same private Redis.

Latency under load: open-loop submission at 25%, 50% and 100% of agentchord's measured
saturation rate (the same absolute rate for both systems), each run's latency measured from
its *scheduled* submission time (so a client falling behind counts) to its finish: the run
record's ``finished_at`` for agentchord, the last task's stamp for plain Celery (one host, one clock).

    python bench/throughput.py
    python bench/throughput.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    percentile,
    print_table,
    write_json,
)
from bench.tasks import INSTANT_DIAMOND as DIAMOND
from coordinator import Run, start
from proj.celery import app, current_settings
from proj.queues import COORDINATOR_QUEUE
from proj.registry import registry_for

QUEUE = "instant"
DRAIN_TIMEOUT_S = 180


@dataclass(frozen=True)
class Config:
    processes: list[int]
    batch: int
    reps: int
    loads: list[float]
    load_seconds: float
    load_processes: int


# -- one system each: submit a run, collect finish times --------------------------------------


def submit_plain(key: str, token: str) -> None:
    noop = app.signature("bench.noop", queue=QUEUE, immutable=True)
    done = app.signature("bench.noop_done_at", kwargs={"key": key, "token": token}, queue=QUEUE)
    chain(noop.clone(), chord([noop.clone(), noop.clone()], done)).apply_async()


def plain_finishes(client: redis.Redis, key: str, n: int) -> dict[str, float]:
    """token -> finish time, for the ``n`` canvases that signal on ``key``."""
    finishes: dict[str, float] = {}
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while len(finishes) < n:
        popped = client.blpop([key], timeout=max(1, int(deadline - time.monotonic())))
        if popped is None:
            raise RuntimeError(f"{n - len(finishes)} plain canvases did not finish within {DRAIN_TIMEOUT_S}s")
        token, at = popped[1].split()
        finishes[token] = float(at)
    return finishes


def agentchord_finishes(runs: list[Run]) -> list[float]:
    """Each run's finish time (the run record's, server clock), in ``runs`` order."""
    registry = registry_for(current_settings())
    for run in runs:
        run.wait(timeout=DRAIN_TIMEOUT_S)
    return [float(registry.run_record(run.id)["finished_at"]) for run in runs]


# -- saturation ---------------------------------------------------------------------------------


def agentchord_batch(n: int) -> float:
    """Runs per second for a batch of ``n`` submitted at once."""
    began = time.time()
    runs = [start(DIAMOND, input={}) for _ in range(n)]
    return n / (max(agentchord_finishes(runs)) - began)


def plain_batch(client: redis.Redis, n: int) -> float:
    key = f"bench:done:{uuid.uuid4().hex}"
    began = time.time()
    for i in range(n):
        submit_plain(key, str(i))
    return n / (max(plain_finishes(client, key, n).values()) - began)


def saturation(stack: Stack, batch: int, reps: int) -> tuple[float, float]:
    """Mean runs/s of each system over ``reps`` alternating batches."""
    ours: list[float] = []
    plain: list[float] = []
    for _ in range(reps):
        ours.append(agentchord_batch(batch))
        plain.append(plain_batch(stack.client, batch))
    return statistics.fmean(ours), statistics.fmean(plain)


# -- latency under an open-loop load ------------------------------------------------------------


def schedule(rate: float, seconds: float) -> list[float]:
    began = time.time() + 0.05
    return [began + i / rate for i in range(max(1, round(rate * seconds)))]


def wait_until(at: float) -> None:
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)


def agentchord_load(rate: float, seconds: float) -> tuple[list[float], float]:
    """Latencies (s) from each run's scheduled start to its finish; the achieved submit rate."""
    planned = schedule(rate, seconds)
    runs = []
    for at in planned:
        wait_until(at)
        runs.append(start(DIAMOND, input={}))
    achieved = len(planned) / (time.time() - planned[0])
    return [end - at for end, at in zip(agentchord_finishes(runs), planned, strict=True)], achieved


def plain_load(client: redis.Redis, rate: float, seconds: float) -> tuple[list[float], float]:
    planned = schedule(rate, seconds)
    key = f"bench:done:{uuid.uuid4().hex}"
    for i, at in enumerate(planned):
        wait_until(at)
        submit_plain(key, str(i))
    achieved = len(planned) / (time.time() - planned[0])
    finishes = plain_finishes(client, key, len(planned))
    return [finishes[str(i)] - at for i, at in enumerate(planned)], achieved


def load_row(stack: Stack, fraction: float, ours_sat: float, plain_sat: float, seconds: float) -> dict[str, Any]:
    rate = fraction * ours_sat
    ours, ours_rate = agentchord_load(rate, seconds)
    plain, plain_rate = plain_load(stack.client, rate, seconds)
    return {
        "fraction_of_agentchord_saturation": fraction,
        "offered_per_min": rate * 60,
        "fraction_of_plain_saturation": rate / plain_sat,
        "runs_each": len(ours),
        "agentchord_submitted_per_min": ours_rate * 60,
        "plain_submitted_per_min": plain_rate * 60,
        "agentchord_p50_ms": percentile(ours, 50) * 1000,
        "agentchord_p99_ms": percentile(ours, 99) * 1000,
        "plain_p50_ms": percentile(plain, 50) * 1000,
        "plain_p99_ms": percentile(plain, 99) * 1000,
    }


# -- the benchmark --------------------------------------------------------------------------------


def warm_up(stack: Stack) -> None:
    for _ in range(5):
        agentchord_batch(1)
        plain_batch(stack.client, 1)
    agentchord_batch(20)
    plain_batch(stack.client, 20)


def run_all(stack: Stack, config: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    saturation_rows: list[dict[str, Any]] = []
    load_rows: list[dict[str, Any]] = []
    for processes in config.processes:
        stack.start_workers([WorkerSpec([QUEUE, COORDINATOR_QUEUE], f"tp{processes}", processes)])
        warm_up(stack)
        ours, plain = saturation(stack, config.batch, config.reps)
        row = {"processes": processes, "agentchord_per_min": ours * 60, "plain_per_min": plain * 60}
        saturation_rows.append(row | {"ratio": plain / ours})
        if processes == config.load_processes:
            load_rows = [load_row(stack, f, ours, plain, config.load_seconds) for f in config.loads]
    stack.stop_workers()
    return saturation_rows, load_rows


def report(config: Config, saturation_rows: list[dict[str, Any]], load_rows: list[dict[str, Any]]) -> None:
    print(
        f"\nSaturation: instant diamond, batches of {config.batch} submitted at once, {config.reps} per system, "
        "alternating; one prefork worker with N processes on the agent and coordinator queues\n"
    )
    print_table(
        ["worker processes", "agentchord workflows/min", "plain Celery workflows/min", "plain / agentchord"],
        [
            [r["processes"], f"{r['agentchord_per_min']:.0f}", f"{r['plain_per_min']:.0f}", f"**{r['ratio']:.2f}x**"]
            for r in saturation_rows
        ],
    )
    if not load_rows:
        return
    print(
        f"\nLatency under open-loop load: {config.load_processes} worker processes, {config.load_seconds:g} s per "
        "level, the same offered rate for both systems (a fraction of agentchord's saturation); latency from the "
        "scheduled submission to the run's finish\n"
    )
    headers = [
        "offered load", "offered/min", "% of plain's saturation", "runs each",
        "agentchord P50 ms", "agentchord P99 ms", "plain P50 ms", "plain P99 ms", "P99 ratio",
    ]  # fmt: skip
    print_table(
        headers,
        [
            [
                f"{r['fraction_of_agentchord_saturation']:.0%}",
                f"{r['offered_per_min']:.0f}",
                f"{r['fraction_of_plain_saturation']:.0%}",
                r["runs_each"],
                f"{r['agentchord_p50_ms']:.1f}",
                f"{r['agentchord_p99_ms']:.1f}",
                f"{r['plain_p50_ms']:.1f}",
                f"{r['plain_p99_ms']:.1f}",
                f"{r['agentchord_p99_ms'] / r['plain_p99_ms']:.2f}x",
            ]
            for r in load_rows
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches and short load levels (~30 s)")
    parser.add_argument("--processes", default="1,2,4", help="worker process counts to measure")
    parser.add_argument("--batch", type=int, default=200, help="runs per saturation batch")
    parser.add_argument("--reps", type=int, default=2, help="saturation batches per system and process count")
    parser.add_argument("--loads", default="0.25,0.5,1.0", help="offered loads, fractions of saturation")
    parser.add_argument("--load-seconds", type=float, default=8.0, help="submission time per load level")
    parser.add_argument("--load-processes", type=int, default=2, help="process count of the load sweep")
    parser.add_argument("--out", default="bench/results/throughput.json")
    args = parser.parse_args()
    config = Config(
        processes=[int(p) for p in args.processes.split(",")],
        batch=40 if args.quick else args.batch,
        reps=1 if args.quick else args.reps,
        loads=[float(f) for f in args.loads.split(",")],
        load_seconds=2.0 if args.quick else args.load_seconds,
        load_processes=args.load_processes,
    )

    began = time.perf_counter()
    with bench_stack(("bench.tasks", "bench.throughput_tasks")) as stack:
        saturation_rows, load_rows = run_all(stack, config)
    elapsed = time.perf_counter() - began

    report(config, saturation_rows, load_rows)
    print(f"\nelapsed {elapsed:.0f} s")
    write_json(
        args.out,
        {
            "command": command_line(),
            "config": config.__dict__,
            "elapsed_s": round(elapsed, 1),
            **machine(),
            "saturation": saturation_rows,
            "latency_under_load": load_rows,
        },
    )


if __name__ == "__main__":
    main()
    exit_now()
