"""Coordination overhead: the code-review diamond with instant agents, agentchord vs plain Celery.

Both run on the same private Redis and the same worker processes, interleaved run by run, one
run at a time, so the ratio is measured under the same noise:

- agentchord: review -> (tests || docs) -> merge as a workflow (chain / chord into
  ``coordinator.advance``, registry reads and writes, event log);
- plain Celery: ``chain(noop, chord([noop, noop], noop_done))`` of no-op tasks.

Completion is awaited the same way for both: a Redis signal written by the last task
(agentchord's run_finished event, the plain canvas's RPUSH), never ``AsyncResult.get()``.

    python bench/overhead.py --runs 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

import redis
from celery import chain, chord
from celery.result import _set_task_join_will_block

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import commands_total, percentile
from bench.tasks import INSTANT_DIAMOND as DIAMOND
from coordinator import start
from coordinator.stack import WorkerProcess
from proj.celery import app, configure
from proj.queues import COORDINATOR_QUEUE
from proj.redis_server import RedisServer
from proj.settings import Settings

STEPS = 4
HOPS: list[tuple[float, float]] = []  # (handoff, queue wait) of every agentchord step measured


def run_agentchord(record: bool = False) -> float:
    started = time.perf_counter()
    run = start(DIAMOND, input={})
    run.wait(timeout=60)
    elapsed = time.perf_counter() - started
    if record:
        # After the clock stopped: reading the accounting is not part of the latency.
        HOPS.extend((s.handoff_s or 0.0, s.queue_wait_s or 0.0) for s in run.timings().steps)
    return elapsed


def net_input_bytes(client: redis.Redis) -> int:
    return int(client.info("stats")["total_net_input_bytes"])


def run_plain(client: redis.Redis) -> float:
    key = f"bench:done:{uuid.uuid4().hex}"
    noop = app.signature("bench.noop", queue="instant", immutable=True)
    done = app.signature("bench.noop_done", kwargs={"key": key}, queue="instant")
    canvas = chain(noop.clone(), chord([noop.clone(), noop.clone()], done))
    started = time.perf_counter()
    canvas.apply_async()
    if client.blpop([key], timeout=60) is None:
        raise RuntimeError("plain canvas did not finish within 60s")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs of each kind (after warm-up)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--out", default="bench/results/overhead.json")
    args = parser.parse_args()

    # This process never waits on Celery results (both sides signal completion through Redis),
    # so tell Celery not to subscribe to every sent task's result channel, as workers do.
    _set_task_join_will_block(True)
    with RedisServer() as server:
        settings = Settings(redis_url=server.url, agent_modules=("bench.tasks",))
        configure(settings)
        import bench.tasks  # noqa: F401  (registers the instant role in this process too)

        worker = WorkerProcess(["instant", COORDINATOR_QUEUE], "bench", settings, concurrency=args.concurrency)
        worker.start().wait_ready()
        client = redis.Redis.from_url(server.url)
        try:
            for _ in range(args.warmup):
                run_agentchord()
                run_plain(client)
            ours: list[float] = []
            plain: list[float] = []
            ours_cmds = plain_cmds = ours_bytes = plain_bytes = 0
            for _ in range(args.runs):
                before, before_bytes = commands_total(client), net_input_bytes(client)
                ours.append(run_agentchord(record=True))
                middle, middle_bytes = commands_total(client), net_input_bytes(client)
                plain.append(run_plain(client))
                after, after_bytes = commands_total(client), net_input_bytes(client)
                # The INFO readings themselves are two commands per pair; leave them out.
                ours_cmds += middle - before - 2
                plain_cmds += after - middle - 2
                ours_bytes += middle_bytes - before_bytes
                plain_bytes += after_bytes - middle_bytes
        finally:
            worker.stop()

    rows = []
    measured = (("agentchord", ours, ours_cmds, ours_bytes), ("plain Celery", plain, plain_cmds, plain_bytes))
    for name, values, cmds, sent in measured:
        rows.append(
            {
                "system": name,
                "p50_ms": percentile(values, 50) * 1000,
                "p99_ms": percentile(values, 99) * 1000,
                "mean_ms": statistics.fmean(values) * 1000,
                "redis_commands_per_run": cmds / args.runs,
                "redis_commands_per_step": cmds / args.runs / STEPS,
                "bytes_to_redis_per_step": sent / args.runs / STEPS,
            }
        )
    hop_handoff_ms = statistics.fmean(h for h, _ in HOPS) * 1000
    hop_queue_ms = statistics.fmean(q for _, q in HOPS) * 1000
    ratio_p50 = rows[0]["p50_ms"] / rows[1]["p50_ms"]
    ratio_p99 = rows[0]["p99_ms"] / rows[1]["p99_ms"]
    result = {
        "runs": args.runs,
        "worker_processes": args.concurrency,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "rows": rows,
        "ratio_p50": ratio_p50,
        "ratio_p99": ratio_p99,
        "per_hop_handoff_ms": hop_handoff_ms,
        "per_hop_queue_wait_ms": hop_queue_ms,
        "per_step_extra_ms": (rows[0]["p50_ms"] - rows[1]["p50_ms"]) / STEPS,
    }
    print(
        f"\nDiamond, instant agents, {args.runs} sequential runs each, interleaved; "
        f"{args.concurrency} worker processes; {os.cpu_count()} cores\n"
    )
    print("| system | P50 ms | P99 ms | mean ms | Redis commands / step | bytes to Redis / step |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['system']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['mean_ms']:.2f} | "
            f"{row['redis_commands_per_step']:.1f} | {row['bytes_to_redis_per_step']:.0f} |"
        )
    print(f"| **ratio** | **{ratio_p50:.2f}x** | **{ratio_p99:.2f}x** | | | |")
    print(
        f"\nper hop (agentchord, mean over {len(HOPS)} steps): handoff {hop_handoff_ms:.2f} ms, queue wait "
        f"{hop_queue_ms:.2f} ms; extra latency per step vs plain Celery (P50): {result['per_step_extra_ms']:.2f} ms"
    )
    print("Redis commands include those run inside Lua scripts (INFO commandstats counts them).")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Skip interpreter finalisation: Celery's AsyncResult.__del__ of the plain chords' results
    # would try to unsubscribe from the Redis server this script has already stopped.
    os._exit(0)
