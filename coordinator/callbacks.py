"""The coordinator's Celery tasks. The coordinator is not a process, but these callbacks.

- ``coordinator.advance``: the callback every chain and chord ends in; dispatches what became ready.
- ``coordinator.sweep_deadlines``: the periodic approval-deadline sweep (celery beat).
- ``coordinator.notify_approval``: one signed outbound notification, on the ``notifications`` queue.
"""

from __future__ import annotations

import random
from typing import Any

import redis

from coordinator.approvals import sweep_deadlines
from coordinator.dispatch import dispatch_ready
from coordinator.notify import TransientDeliveryError, deliver, redact
from proj.celery import app, current_settings
from proj.registry import registry_for


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


@app.task(name="coordinator.sweep_deadlines", ignore_result=True)  # type: ignore[untyped-decorator]
def sweep_deadlines_task(now: float | None = None) -> list[tuple[str, str]]:
    """Fire ``on_timeout`` of every approval past its deadline (``now``: tests pin the clock)."""
    return sweep_deadlines(registry_for(current_settings()), now)


@app.task(name="coordinator.notify_approval", bind=True, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
def notify_approval(self: Any, approval_id: str, url: str, event: str = "approval.requested") -> int | None:
    """Deliver one notification; retry 5xx/timeouts with exponential backoff and jitter."""
    settings = current_settings()
    registry = registry_for(settings)
    attempt = self.request.retries + 1
    try:
        return deliver(registry, approval_id, url, event, attempt)
    except TransientDeliveryError as exc:
        if attempt >= settings.notify_max_attempts:
            registry.add_event(
                approval_id.partition(".")[0], "notification_failed", url=redact(url), event=event, error=str(exc)
            )
            return None
        delay = settings.notify_backoff_s * 2 ** (attempt - 1)
        raise self.retry(countdown=delay * random.uniform(0.8, 1.2)) from None
