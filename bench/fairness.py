"""Fair admission: a tenant that floods the system does not make another one wait.

Tenant ``bulk`` submits ``--bulk`` runs at once; tenant ``small`` submits one run every second
while the bulk drains. Each run is one step that works ``--work-ms``. Four ways run on the same
private Redis and workers, one after the other:

- ``fair``: agentchord with ``max_running_per_workflow`` and round-robin admission across tenants;
- ``fifo``: the same limit, one admission queue in order of arrival (no fairness);
- ``no limit``: agentchord without admission (every run's step goes to the broker at once);
- ``plain Celery``: the same task sent with ``apply_async``.

For each, the small tenant's wait from submission to its step's start (and, for agentchord with a
limit, to its admission) and the bulk's drain time are printed.

    python bench/fairness.py
    python bench/fairness.py --bulk 300 --small 4      # quicker
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fairness_tasks import nap_workflow
from bench.harness import (
    Stack,
    WorkerSpec,
    bench_stack,
    command_line,
    exit_now,
    machine,
    median,
    print_table,
    write_json,
)
from coordinator import Run, start
from proj.celery import app
from proj.queues import COORDINATOR_QUEUE
from proj.registry import registry_for
from proj.settings import Settings

DRAIN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Config:
    bulk: int
    small: int
    work_ms: float
    limit: int
    processes: int


def small_schedule(config: Config) -> list[float]:
    """When the small tenant submits: one run a second, starting half a second in."""
    return [0.5 + i for i in range(config.small)]


def run_agentchord(stack: Stack, config: Config, order: str | None) -> dict[str, Any]:
    """One round: bulk floods, small trickles; waits measured from the run records."""
    settings: Settings = stack.settings
    if order is not None:
        settings = settings.model_copy(update={"max_running_per_workflow": config.limit, "admission_order": order})
    workflow = nap_workflow(config.work_ms)
    bulk: list[Run] = []
    small: list[Run] = []
    began = time.time()

    def flood() -> None:
        for _ in range(config.bulk):
            bulk.append(start(workflow, tenant="bulk", settings=settings))

    flooder = threading.Thread(target=flood)
    flooder.start()
    for at in small_schedule(config):
        time.sleep(max(0.0, began + at - time.time()))
        small.append(start(workflow, tenant="small", settings=settings))
    flooder.join()
    for run in [*bulk, *small]:
        run.wait(timeout=DRAIN_TIMEOUT_S)
    registry = registry_for(settings)

    def waits(runs: list[Run]) -> tuple[list[float], list[float]]:
        to_admission, to_start = [], []
        for run in runs:
            record = registry.run_record(run.id)
            created = float(record["created_at"])
            started = float(registry.step_records(run.id)["work"]["started_at"])
            to_admission.append(float(record.get("admitted_at") or created) - created)
            to_start.append(started - created)
        return to_admission, to_start

    small_admission, small_start = waits(small)
    finished = max(float(registry.run_record(run.id)["finished_at"]) for run in bulk)
    return {
        "small_admission_s": small_admission,
        "small_start_s": small_start,
        "bulk_drain_s": finished - began,
    }


def run_plain(stack: Stack, config: Config) -> dict[str, Any]:
    """The same load as plain Celery tasks on the same queue and workers."""
    key = f"bench:fairness:{uuid.uuid4().hex[:8]}"
    submitted: dict[str, float] = {}
    began = time.time()

    def send(token: str) -> None:
        submitted[token] = time.time()
        app.signature("bench.nap_stamped", args=(key, token, config.work_ms)).apply_async(queue="nap")

    def flood() -> None:
        for i in range(config.bulk):
            send(f"bulk{i}")

    flooder = threading.Thread(target=flood)
    flooder.start()
    for i, at in enumerate(small_schedule(config)):
        time.sleep(max(0.0, began + at - time.time()))
        send(f"small{i}")
    flooder.join()
    total = config.bulk + config.small
    started: dict[str, float] = {}
    deadline = time.time() + DRAIN_TIMEOUT_S
    while len(started) < total and time.time() < deadline:
        item: Any = stack.client.blpop([key], timeout=1)
        if item:
            token, at = item[1].split()
            started[token] = float(at)
    small_start = [started[t] - submitted[t] for t in submitted if t.startswith("small")]
    last_bulk = max(started[t] for t in started if t.startswith("bulk"))
    return {
        "small_admission_s": [],
        "small_start_s": small_start,
        "bulk_drain_s": last_bulk + config.work_ms / 1000 - began,
    }


def row(name: str, result: dict[str, Any], config: Config) -> list[str]:
    admission = result["small_admission_s"]
    start_waits = result["small_start_s"]
    return [
        name,
        f"{median(admission) * 1000:.0f}" if admission else "-",
        f"{max(admission) * 1000:.0f}" if admission else "-",
        f"{median(start_waits) * 1000:.0f}",
        f"{max(start_waits) * 1000:.0f}",
        f"{result['bulk_drain_s']:.1f}",
        f"{config.bulk / result['bulk_drain_s']:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk", type=int, default=1000, help="runs the bulk tenant submits at once")
    parser.add_argument("--small", type=int, default=8, help="runs the small tenant submits, one a second")
    parser.add_argument("--work-ms", type=float, default=10.0, help="work of each run's one step")
    parser.add_argument("--limit", type=int, default=4, help="max_running_per_workflow in the limited rounds")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--out", default="bench/results/fairness.json")
    args = parser.parse_args()
    config = Config(args.bulk, args.small, args.work_ms, args.limit, args.processes)
    began = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    workers = [WorkerSpec(["nap", COORDINATOR_QUEUE], "fair", concurrency=config.processes)]
    with bench_stack(("bench.fairness_tasks",), workers) as stack:
        for name, order in (("fair", "fair"), ("fifo", "fifo"), ("no limit", None)):
            results[name] = run_agentchord(stack, config, order)
            stack.client.flushdb()
        results["plain Celery"] = run_plain(stack, config)
    elapsed = time.perf_counter() - began
    print(
        f"\nbulk: {config.bulk} runs at once; small: {config.small} runs, one a second; each run one step of "
        f"{config.work_ms:g} ms; {config.processes} worker processes; limit {config.limit} running runs per workflow"
    )
    print_table(
        ["way", "small admission P50 ms", "max ms", "small start P50 ms", "max ms", "bulk drain s", "bulk runs/s"],
        [row(name, result, config) for name, result in results.items()],
        align="lrrrrrr",
    )
    print(f"\nelapsed {elapsed:.0f} s")
    write_json(
        args.out,
        {"command": command_line(), "config": config.__dict__, **machine(), "results": results},
    )


if __name__ == "__main__":
    main()
    exit_now()
