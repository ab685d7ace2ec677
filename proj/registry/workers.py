"""The live role registry: which workers serve which queues, seen by their heartbeats.

Every worker's main process writes one hash field every ``AGENTCHORD_WORKER_HEARTBEAT_S``
(its queues, concurrency and tasks in flight); a worker not seen for three intervals is gone.
Queue depths and the oldest waiting message are read from the broker's lists (the Redis
transport keeps a queue's messages in a list named after it, oldest at the right end).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from proj.connections import amqp_queue_depths, broker_is_redis
from proj.queues import PRIORITY_STEPS, priority_lists
from proj.registry.plans import PlansMixin
from proj.registry.records import step_records_of


@dataclass(frozen=True)
class WorkerBeat:
    hostname: str
    queues: tuple[str, ...]
    concurrency: int
    in_flight: int
    seen_at: float


class WorkersMixin(PlansMixin):
    def heartbeat(self, hostname: str, queues: list[str], concurrency: int, in_flight: int) -> None:
        beat = {"queues": queues, "concurrency": concurrency, "in_flight": in_flight, "seen_at": time.time()}
        self.client.hset(self.keys.workers, hostname, json.dumps(beat))

    def forget_worker(self, hostname: str) -> None:
        self.client.hdel(self.keys.workers, hostname)

    def live_workers(self) -> list[WorkerBeat]:
        """Workers seen within three heartbeats; older entries are dropped."""
        horizon = time.time() - 3 * self.settings.worker_heartbeat_s
        live, dead = [], []
        for hostname, raw in self.client.hgetall(self.keys.workers).items():
            beat = json.loads(raw)
            if beat["seen_at"] < horizon:
                dead.append(hostname)
                continue
            live.append(WorkerBeat(hostname, tuple(beat["queues"]), beat["concurrency"], beat["in_flight"],
                                   beat["seen_at"]))  # fmt: skip
        if dead:
            self.client.hdel(self.keys.workers, *dead)
        return sorted(live, key=lambda beat: beat.hostname)

    def queue_depths(self, queues: list[str]) -> dict[str, int]:
        """Messages waiting per queue, its priority lists included (on RabbitMQ: ready messages)."""
        if self.settings.broker_url and not broker_is_redis(self.settings):
            return amqp_queue_depths(self.settings.broker_url, queues)
        with self.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for name in priority_lists(queue):
                    pipe.llen(name)
            counts = [int(n) for n in pipe.execute()]
        per = len(PRIORITY_STEPS)
        return {queue: sum(counts[i * per : (i + 1) * per]) for i, queue in enumerate(queues)}

    def waiting_task_ids(self, queue: str, limit: int = 100) -> list[str]:
        """The ids of the oldest ``limit`` messages waiting in ``queue`` (each priority list's,
        in the order they are consumed), oldest first. RabbitMQ shows no message without handing
        it out: there, the steps of active runs dispatched to ``queue`` and not started (what the
        registry knows was sent), oldest first."""
        if self.settings.broker_url and not broker_is_redis(self.settings):
            return self._dispatched_to(queue, limit)
        ids: list[str] = []
        for name in priority_lists(queue):
            raw = self.client.lrange(name, -limit, -1)
            ids += [task_id for task_id in (_task_id(message) for message in reversed(raw)) if task_id]
        return ids[:limit]

    def _dispatched_to(self, queue: str, limit: int, scan: int = 1000) -> list[str]:
        """``<run>.<step>`` of steps dispatched to ``queue`` and not started, in active runs (at
        most ``scan`` of them), oldest dispatch first."""
        found: list[tuple[float, str]] = []
        for run_id in self.client.zrange(self.keys.active_runs, 0, scan - 1):
            digest = self.client.hget(self.run_keys(run_id).run, "plan")
            plan = self.plan_by_digest(digest) if digest else {}
            for step, record in step_records_of(self.client.hgetall(self.run_keys(run_id).steps)).items():
                if record.get("state") == "dispatched" and step in plan and plan[step].agent == queue:
                    found.append((float(record.get("dispatched_at") or 0), f"{run_id}.{step}"))
        return [task_id for _, task_id in sorted(found)[:limit]]


def _task_id(message: Any) -> str:
    try:
        return str(json.loads(message).get("headers", {}).get("id", ""))
    except (ValueError, AttributeError):
        return ""
