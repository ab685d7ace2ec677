"""What the benchmarks share: a private Redis with workers, percentiles, Redis counters, output.

    with bench_stack(("bench.tasks",), [WorkerSpec(["instant", COORDINATOR_QUEUE], "bench")]) as stack:
        start(workflow, input={}).wait()
        stack.client.info("memory")

Everything a benchmark starts is stopped when the block exits (workers first, Redis last).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery.result import _set_task_join_will_block

from coordinator.interfaces.stack import WorkerProcess
from proj.celery import configure
from proj.rabbitmq_vhost import private_vhost
from proj.redis_server import RedisServer
from proj.settings import Settings


@dataclass(frozen=True)
class WorkerSpec:
    """One ``celery worker`` process: its queues, name, pool and pool size."""

    queues: list[str]
    name: str
    concurrency: int = 2
    pool: str = "prefork"


@dataclass
class Stack:
    server: RedisServer
    settings: Settings
    client: redis.Redis
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_workers(self, specs: Sequence[WorkerSpec], log_dir: Path | None = None) -> None:
        """Start ``specs`` (stopping the workers running now) and wait until each answers a ping."""
        self.stop_workers()
        for spec in specs:
            log = log_dir / f"{spec.name}.log" if log_dir else None
            worker = WorkerProcess(spec.queues, spec.name, self.settings, spec.concurrency, spec.pool, log_path=log)
            self.workers.append(worker.start())
        for worker in self.workers:
            worker.wait_ready(timeout_s=120)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


BROKERS = ("redis", "rabbitmq")


@contextmanager
def broker_url(broker: str) -> Iterator[str | None]:
    """``AGENTCHORD_BROKER_URL`` for ``--broker``: None (the broker is the benchmark's Redis) or
    a private virtual host on the machine's RabbitMQ, deleted afterwards."""
    if broker == "redis":
        yield None
    elif broker == "rabbitmq":
        with private_vhost() as url:
            yield url
    else:
        raise ValueError(f"--broker must be one of {', '.join(BROKERS)}, not {broker!r}")


@contextmanager
def bench_stack(
    agent_modules: tuple[str, ...],
    workers: Sequence[WorkerSpec] = (),
    log_dir: Path | None = None,
    **settings: Any,
) -> Iterator[Stack]:
    """A private Redis, the app configured on it, ``agent_modules`` imported here too, and
    ``workers`` started; all of it stopped on exit."""
    # This process never waits on Celery results (runs signal completion through Redis), so
    # Celery must not subscribe to every sent task's result channel.
    _set_task_join_will_block(True)
    with RedisServer() as server:
        config = Settings(redis_url=server.url, agent_modules=agent_modules, **settings)
        configure(config)
        import agents

        agents.load_agent_modules(agent_modules)  # the roles, for validation in this process
        stack = Stack(server, config, redis.Redis.from_url(server.url, decode_responses=True))
        try:
            stack.start_workers(workers, log_dir)
            yield stack
        finally:
            stack.stop_workers()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def commands_total(client: redis.Redis) -> int:
    """Commands the server has executed so far (INFO commandstats); each reading adds one."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls so far per command name (INFO commandstats; Lua's inner commands included)."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def round_trips_total(client: redis.Redis) -> int:
    """Requests the server has read from clients so far: a pipeline or a script is one, the
    commands a script runs inside are none (INFO stats ``total_reads_processed``)."""
    return int(client.info("stats")["total_reads_processed"])


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> None:
    """A markdown table; ``align`` is one letter per column (``l`` or ``r``, default ``r``
    except the first column)."""
    align = align or "l" + "r" * (len(headers) - 1)
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if a == "l" else "---:" for a in align) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def write_json(path: str, result: dict[str, Any]) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


def command_line() -> str:
    return " ".join(["python", *sys.argv])


def exit_now() -> None:
    """Flush and leave without interpreter finalisation: Celery's AsyncResult.__del__ of sent
    chords would talk to the Redis server the benchmark has already stopped."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
