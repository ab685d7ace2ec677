"""Coordination overhead: the code-review diamond with instant agents, agentchord vs plain Celery.

Both run on the same private Redis and the same worker processes, interleaved run by run, one
run at a time, so the ratio is measured under the same noise:

- agentchord: review -> (tests || docs) -> merge as a workflow (chain / chord into
  ``coordinator.advance``, registry reads and writes, event log);
- plain Celery: ``chain(noop, chord([noop, noop], noop_done))`` of no-op tasks.

Completion is awaited the same way for both: a Redis signal written by the last task
(agentchord's run_finished event, the plain canvas's RPUSH), never ``AsyncResult.get()``.

    python bench/overhead.py --runs 200
    python bench/overhead.py --runs 200 --broker rabbitmq

With ``--broker rabbitmq`` both sides send their task messages through a private RabbitMQ
virtual host (quorum queues) and keep results and the registry in the Redis: the Redis counters
then count no broker traffic, and "broker messages" (Redis LPUSHes) are 0.
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
from collections import Counter
from pathlib import Path

import redis
from celery import chain, chord
from celery.result import _set_task_join_will_block

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BROKERS, broker_url, command_counts, percentile, process_tree_cpu_s
from bench.tasks import INSTANT_DIAMOND as DIAMOND
from coordinator import Run, start
from coordinator.interfaces.stack import WorkerProcess
from proj.celery import app, configure
from proj.queues import COORDINATOR_QUEUE
from proj.redis_server import RedisServer
from proj.settings import Settings

STEPS = 4
HOPS: list[tuple[float, float]] = []  # (handoff, queue wait) of every agentchord step measured
MEASURED: list[Run] = []


def run_agentchord(record: bool = False) -> float:
    started = time.perf_counter()
    run = start(DIAMOND, input={})
    run.wait(timeout=60)
    elapsed = time.perf_counter() - started
    if record:
        MEASURED.append(run)  # its accounting is read after the measurements, not counted in them
    return elapsed


def reading(client: redis.Redis, worker: WorkerProcess) -> dict[str, float]:
    """Counters at one point: per-command calls, requests read, bytes in, worker and client CPU."""
    stats = client.info("stats")
    assert worker.process is not None
    values: dict[str, float] = {f"cmd:{name}": calls for name, calls in command_counts(client).items()}
    values["commands"] = sum(v for k, v in values.items() if k.startswith("cmd:"))
    values["round_trips"] = int(stats["total_reads_processed"])
    values["bytes_in"] = int(stats["total_net_input_bytes"])
    values["worker_cpu_s"] = process_tree_cpu_s(worker.process.pid)
    values["client_cpu_s"] = time.process_time()
    return values


def after_minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """What happened between two readings, less the two INFO requests of a reading."""
    delta = {key: value - before.get(key, 0) for key, value in after.items()}
    delta["commands"] -= 2
    delta["cmd:info"] = delta.get("cmd:info", 0) - 2
    delta["round_trips"] -= 2
    return delta


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
    parser.add_argument("--broker", choices=BROKERS, default="redis", help="where task messages go")
    parser.add_argument("--out", default=None, help="default bench/results/overhead[-BROKER].json")
    args = parser.parse_args()

    # This process never waits on Celery results (both sides signal completion through Redis),
    # so tell Celery not to subscribe to every sent task's result channel, as workers do.
    _set_task_join_will_block(True)
    out = args.out or f"bench/results/overhead{'' if args.broker == 'redis' else '-' + args.broker}.json"
    with RedisServer() as server, broker_url(args.broker) as broker:
        settings = Settings(redis_url=server.url, broker_url=broker, agent_modules=("bench.tasks",))
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
            totals = {name: Counter() for name in ("agentchord", "plain Celery")}
            for _ in range(args.runs):
                before = reading(client, worker)
                ours.append(run_agentchord(record=True))
                middle = reading(client, worker)
                plain.append(run_plain(client))
                after = reading(client, worker)
                totals["agentchord"].update(after_minus(middle, before))
                totals["plain Celery"].update(after_minus(after, middle))
            for run in MEASURED:
                HOPS.extend((s.handoff_s or 0.0, s.queue_wait_s or 0.0) for s in run.timings().steps)
        finally:
            worker.stop()

    rows = []
    for name, values in (("agentchord", ours), ("plain Celery", plain)):
        total = totals[name]
        per_run = {key: value / args.runs for key, value in total.items()}
        rows.append(
            {
                "system": name,
                "p50_ms": percentile(values, 50) * 1000,
                "p99_ms": percentile(values, 99) * 1000,
                "mean_ms": statistics.fmean(values) * 1000,
                "redis_commands_per_run": per_run["commands"],
                "redis_commands_per_step": per_run["commands"] / STEPS,
                "round_trips_per_step": per_run["round_trips"] / STEPS,
                "bytes_to_redis_per_step": per_run["bytes_in"] / STEPS,
                "broker_messages_per_run": per_run.get("cmd:lpush", 0.0),
                "worker_cpu_ms_per_run": per_run["worker_cpu_s"] * 1000,
                "client_cpu_ms_per_run": per_run["client_cpu_s"] * 1000,
                "commands_per_run_by_name": {
                    key[4:]: round(value, 2)
                    for key, value in sorted(per_run.items(), key=lambda kv: -kv[1])
                    if key.startswith("cmd:") and value >= 0.5
                },
            }
        )
    hop_handoff_ms = statistics.fmean(h for h, _ in HOPS) * 1000
    hop_queue_ms = statistics.fmean(q for _, q in HOPS) * 1000
    ratio_p50 = rows[0]["p50_ms"] / rows[1]["p50_ms"]
    ratio_p99 = rows[0]["p99_ms"] / rows[1]["p99_ms"]
    result = {
        "runs": args.runs,
        "broker": args.broker,
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
        f"\nDiamond, instant agents, {args.runs} sequential runs each, interleaved; broker: {args.broker}; "
        f"{args.concurrency} worker processes; {os.cpu_count()} cores\n"
    )
    print(
        "| system | P50 ms | P99 ms | mean ms | Redis commands / step | round trips / step | bytes to Redis / step "
        "| broker messages / run | worker CPU ms / run | client CPU ms / run |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['system']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['mean_ms']:.2f} | "
            f"{row['redis_commands_per_step']:.1f} | {row['round_trips_per_step']:.1f} | "
            f"{row['bytes_to_redis_per_step']:.0f} | {row['broker_messages_per_run']:.1f} | "
            f"{row['worker_cpu_ms_per_run']:.2f} | {row['client_cpu_ms_per_run']:.2f} |"
        )
    print(f"| **ratio** | **{ratio_p50:.2f}x** | **{ratio_p99:.2f}x** | | | | | | | |")
    for row in rows:
        top = ", ".join(f"{name} {calls:g}" for name, calls in list(row["commands_per_run_by_name"].items())[:14])
        print(f"\n{row['system']}, Redis commands per run: {top}")
    print(
        f"\nper hop (agentchord, mean over {len(HOPS)} steps): handoff {hop_handoff_ms:.2f} ms, queue wait "
        f"{hop_queue_ms:.2f} ms; extra latency per step vs plain Celery (P50): {result['per_step_extra_ms']:.2f} ms"
    )
    print(
        "Redis commands include those run inside Lua scripts (INFO commandstats counts them); a round trip is a "
        "request the server read (INFO stats total_reads_processed: a script or a pipeline is one); broker "
        "messages are LPUSHes; worker CPU is the worker's process tree (/proc), client CPU this process's."
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Skip interpreter finalisation: Celery's AsyncResult.__del__ of the plain chords' results
    # would try to unsubscribe from the Redis server this script has already stopped.
    os._exit(0)
