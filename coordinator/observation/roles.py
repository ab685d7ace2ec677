"""The live role registry as people read it: per queue, its live workers, their concurrency and
tasks in flight, how many messages wait and for how long the oldest has waited; and a run's steps
that wait for a worker no one runs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import BaseModel

from coordinator.observation.status import StepStatus
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
from proj.registry import Registry


class RoleView(BaseModel):
    queue: str
    workers: list[str]
    concurrency: int
    in_flight: int
    waiting: int
    oldest_waiting_s: float | None  # None: nothing waits, or its age is unknown (not a step)


def role_views(registry: Registry, roles: list[str]) -> list[RoleView]:
    """Every declared role's queue, the coordinator's and the notifications', and any other queue
    a live worker serves."""
    workers = registry.live_workers()
    queues = sorted({*roles, COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE, *(q for w in workers for q in w.queues)})
    depths = registry.queue_depths(queues)
    now = registry.server_time()
    views = []
    for queue in queues:
        serving = [w for w in workers if queue in w.queues]
        views.append(
            RoleView(
                queue=queue,
                workers=[w.hostname for w in serving],
                concurrency=sum(w.concurrency for w in serving),
                in_flight=sum(w.in_flight for w in serving),
                waiting=depths[queue],
                oldest_waiting_s=_oldest_age(registry, queue, now) if depths[queue] else None,
            )
        )
    return views


def _oldest_age(registry: Registry, queue: str, now: float) -> float | None:
    """How long the oldest waiting message has waited: a step's id is ``<run>.<step>`` and its
    dispatch time is in the registry."""
    for task_id in registry.waiting_task_ids(queue, limit=1):
        run_id, _, step = task_id.partition(".")
        dispatched = registry.step_records(run_id).get(step, {}).get("dispatched_at")
        if dispatched:
            return max(now - float(dispatched), 0.0)
    return None


class WorkerWait(BaseModel):
    """A step sent to a queue that no live worker serves: it waits there until one starts."""

    step: str
    queue: str
    since: float | None  # when it was dispatched (server time), None when unrecorded

    def line(self) -> str:
        """What `status` and every waiting command print about it, with the command that helps."""
        since = "" if self.since is None else f" since {datetime.fromtimestamp(self.since).strftime('%H:%M:%S')}"
        return (
            f"step {self.step} is waiting for a worker on queue {self.queue}{since}: no live worker serves it "
            f"(start one: celery -A proj worker -Q {self.queue} -n {self.queue}@%h)"
        )


def steps_without_worker(registry: Registry, run_id: str, steps: Mapping[str, StepStatus]) -> list[WorkerWait]:
    """The run's dispatched steps whose role's queue no live worker serves (heartbeats, read
    now: a worker started later picks the step up and it drops out of this list)."""
    dispatched = {name: step.agent for name, step in steps.items() if step.state == "dispatched"}
    if not dispatched:
        return []
    served = {queue for worker in registry.live_workers() for queue in worker.queues}
    unserved = {name: queue for name, queue in dispatched.items() if queue not in served}
    if not unserved:
        return []
    records = registry.step_records(run_id)
    waits = []
    for name, queue in unserved.items():
        dispatched_at = records.get(name, {}).get("dispatched_at")
        waits.append(WorkerWait(step=name, queue=queue, since=float(dispatched_at) if dispatched_at else None))
    return waits
