"""The live role registry as people read it: per queue, its live workers, their concurrency and
tasks in flight, how many messages wait and for how long the oldest has waited."""

from __future__ import annotations

from pydantic import BaseModel

from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
from proj.registry import Event, Registry


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


def waiting_for_workers(events: list[Event]) -> dict[str, str]:
    """Per step flagged by the watchdog: the queue its ``no_worker`` event named (for `status`)."""
    return {e.fields.get("step", ""): e.fields.get("queue", "") for e in events if e.type == "no_worker"}
