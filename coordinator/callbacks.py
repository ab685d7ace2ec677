"""The coordinator: not a process, but the callback every chain and chord ends in.

``coordinator.advance`` runs on any worker consuming the ``coordinator`` queue. It reads what
finished from the registry, claims the steps that became ready (each is claimed exactly once,
atomically) and dispatches them. No process holds a workflow between callbacks.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from coordinator.compile import canvas_for, join_groups, ready_steps
from proj.celery import app, current_settings
from proj.registry import Registry, registry_for

logger = logging.getLogger(__name__)


def dispatch_ready(registry: Registry, run_id: str) -> list[str]:
    """Dispatch every step of ``run_id`` that is ready and not yet dispatched; end the run when
    every step has a result. Idempotent: safe to call from any number of callbacks at once."""
    snapshot = registry.snapshot(run_id)
    if snapshot.state != "running":
        return []
    if snapshot.plan and snapshot.done >= set(snapshot.plan):
        registry.finish_run(run_id, "succeeded")
        return []
    claimed = registry.claim_dispatch(run_id, ready_steps(snapshot.plan, snapshot.done, snapshot.dispatched))
    for steps in join_groups(claimed, snapshot.plan):
        canvas_for(app, run_id, steps, snapshot.plan).apply_async()
    return claimed


@app.task(  # type: ignore[untyped-decorator]
    name="coordinator.advance",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    max_retries=10,
)
def advance(_finished: Any = None, run_id: str = "") -> list[str]:
    """Callback of every step canvas: dispatch what the finished steps made ready."""
    return dispatch_ready(registry_for(current_settings()), run_id)
