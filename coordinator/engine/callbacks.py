"""The coordinator's Celery tasks. The coordinator is not a process, but these callbacks.

- ``coordinator.advance``: dispatches what became ready in a run. The step path no longer sends
  it (a worker claims and sends a finished step's successors itself); kept for messages already
  queued by an older version and for operators who want to nudge a run.
- ``coordinator.sweep_deadlines``: the periodic approval-deadline sweep (celery beat).
- ``coordinator.notify_approval``: one signed outbound notification, on the ``notifications`` queue.
- ``coordinator.step_failed``: every agent task's errback; a step killed by its hard time limit
  is retried later or escalated.
- ``coordinator.escalate_to_approval``: a failed step handed to a human approval.
- ``coordinator.watchdog``: re-drives stalled runs from the registry (celery beat).
- ``coordinator.validate_candidate`` / ``coordinator.rerun_step``: a validator gate's loop.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import redis
from celery.signals import worker_ready

import agents
from agents.runtime import give_up
from coordinator.engine.approvals import sweep_deadlines
from coordinator.engine.checkpoints import ApprovalId, park_budget, park_failure
from coordinator.engine.children import start_child
from coordinator.engine.dispatch import dispatch_ready
from coordinator.engine.notify import TransientDeliveryError, deliver
from coordinator.engine.watchdog import flag_unserved, sweep_stalled
from proj.celery import app, current_settings
from proj.messages import send_step
from proj.plan import plan_for
from proj.queues import (
    ADVANCE_TASK,
    ESCALATE_TO_APPROVAL_TASK,
    NOTIFY_TASK,
    RERUN_TASK,
    START_CHILD_TASK,
    STEP_FAILED_TASK,
    SWEEP_DEADLINES_TASK,
    VALIDATE_TASK,
    WATCHDOG_TASK,
)
from proj.redaction import redact_url
from proj.registry import registry_for

logger = logging.getLogger(__name__)


@app.task(  # type: ignore[untyped-decorator]
    name=ADVANCE_TASK,
    ignore_result=True,
    acks_late=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    max_retries=10,
)
def advance(_finished: Any = None, run_id: str = "") -> list[str]:
    """Dispatch what the run's finished steps made ready (idempotent)."""
    return dispatch_ready(registry_for(current_settings()), run_id)


# The two beat tasks are housekeeping every few seconds: they send no task events, so Flower's task
# list shows workflow work, not thousands of sweeps (their effects are run events).
@app.task(name=SWEEP_DEADLINES_TASK, ignore_result=True, send_events=False)  # type: ignore[untyped-decorator]
def sweep_deadlines_task(now: float | None = None) -> list[tuple[str, str]]:
    """Fire ``on_timeout`` of every approval past its deadline (``now``: tests pin the clock)."""
    return sweep_deadlines(registry_for(current_settings()), now)


@app.task(name=NOTIFY_TASK, bind=True, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
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
                ApprovalId.parse(approval_id).run_id,
                "notification_failed",
                url=redact_url(url),
                event=event,
                error=str(exc),
            )
            return None
        delay = settings.notify_backoff_s * 2 ** (attempt - 1)
        raise self.retry(countdown=delay * random.uniform(0.8, 1.2)) from None


@app.task(name=STEP_FAILED_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def step_failed(request: Any, exc: BaseException, traceback: Any, run_id: str = "", step: str = "") -> str:
    """Errback of every agent task, called in-process by Celery. Failures of the body were handled
    by the agent runtime already; a hard time limit killed the process before it could report,
    so that one is handled here."""
    if type(exc).__name__ != "TimeLimitExceeded":
        return "handled by the agent"
    return step_lost(run_id, step, f"hard time limit exceeded ({exc})")


def step_lost(run_id: str, step: str, error: str) -> str:
    """A step ended without its body reporting: retry it with backoff if attempts remain, else
    escalate it."""
    registry = registry_for(current_settings())
    snapshot = registry.snapshot(run_id)
    found = plan_for(snapshot.plan, step)
    if step in snapshot.done or found is None:
        return "done"
    plan = found
    attempts = int(registry.step_records(run_id).get(step, {}).get("body_runs", 0))
    if not registry.first_loss_report(run_id, step, attempts):
        return "already handled"  # Celery may call a task's errbacks more than once
    policy = plan.retry
    if attempts < policy.max_attempts:
        delay = policy.delay_s(attempts)
        registry.retry_later(run_id, step, "*", error, attempts, delay)
        send_step(run_id, step, plan, snapshot.plan_digest, countdown=delay)
        return "retrying"
    registry.release_claim(run_id, step)
    give_up(registry, run_id, step, "*", f"gave up after {attempts} attempt(s): {error}", "", attempts, plan)
    return "escalated"


@app.task(name=START_CHILD_TASK, ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def start_child_task(run_id: str, step: str) -> str | None:
    """Start the child run of a claimed child step (sent by a process that cannot start runs)."""
    return start_child(registry_for(current_settings()), run_id, step)


@app.task(name=ESCALATE_TO_APPROVAL_TASK, ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def escalate_to_approval(run_id: str, step: str, error: str, kind: str = "failure") -> bool:
    """Turn a failed step into a human approval (``on_failure: escalate_to_approval``), or a
    step stopped by the run's budget into a budget approval (``kind="budget"``)."""
    settings = current_settings()
    park = park_budget if kind == "budget" else park_failure
    return park(registry_for(settings), settings, run_id, step, error)


@app.task(name=WATCHDOG_TASK, ignore_result=True, send_events=False)  # type: ignore[untyped-decorator]
def watchdog() -> dict[str, list[str]]:
    """Re-drive runs with no progress past AGENTCHORD_WATCHDOG_STALL_S; flag steps that wait for
    a role no live worker serves."""
    registry = registry_for(current_settings())
    flag_unserved(registry, agents.known_roles())
    return sweep_stalled(registry)


@worker_ready.connect  # type: ignore[untyped-decorator]
def warn_about_eviction(**_kwargs: Any) -> None:
    """Evicting queues or idempotency keys loses work: say so when a worker starts."""
    try:
        policy = registry_for(current_settings()).client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.RedisError:  # CONFIG may be disabled on managed Redis
        return
    if policy not in (None, "noeviction"):
        logger.warning(
            "Redis maxmemory-policy is %r: under memory pressure Redis will evict queued messages, results "
            "and idempotency keys, and work will be lost; set it to 'noeviction'",
            policy,
        )


@app.task(name=VALIDATE_TASK, ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def validate_candidate(run_id: str, step: str) -> str:
    """Send a validated step's candidate to its validator, on the validator role's queue."""
    registry = registry_for(current_settings())
    snapshot = registry.snapshot(run_id)
    plan = snapshot.plan
    validation = plan[step].validation
    assert validation is not None, f"step {step!r} has no validator"
    check = validation.check_step
    _, round_no, _ = registry.validation_state(run_id, step)
    send_step(run_id, check, plan[check], snapshot.plan_digest, task_id=f"{run_id}.{check}.r{round_no}")
    return check


@app.task(name=RERUN_TASK, ignore_result=True, acks_late=True)  # type: ignore[untyped-decorator]
def rerun_step(run_id: str, step: str) -> None:
    """Run a validated step again (a new round, with the validator's critique)."""
    registry = registry_for(current_settings())
    snapshot = registry.snapshot(run_id)
    _, round_no, _ = registry.validation_state(run_id, step)
    send_step(run_id, step, snapshot.plan[step], snapshot.plan_digest, task_id=f"{run_id}.{step}.r{round_no}")
