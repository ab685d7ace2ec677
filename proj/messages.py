"""How a step's message leaves: to its role's queue, from whichever process claimed the step.

A step is sent by the worker that finished the step before it (as Celery sends a chain's next
task), by ``start``, by a resume or by the watchdog; never through a coordinator task. Messages
carry no Celery result: the registry holds every output, so nothing subscribes to a result
channel or keeps an ``AsyncResult`` (whose ``__del__`` would talk to the result backend).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from proj.celery import app
from proj.plan import StepPlan
from proj.queues import STEP_FAILED_TASK, agent_task_name


class SentStep:
    """Stands in for Celery's ``AsyncResult`` when a step is sent: an id and nothing to wait on."""

    __slots__ = ("id", "ignored")

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.ignored = True


def step_task_id(run_id: str, step: str) -> str:
    """A deterministic Celery task id: readable in Flower and revocable without a lookup."""
    return f"{run_id}.{step}"


def callback_task_id(run_id: str, step: str, kind: str) -> str:
    """The id of a coordinator callback about one step (``<run>.<step>.<kind>``): in Flower it sits
    beside the step's own ``<run>.<step>`` instead of under a random uuid. A kind that can repeat
    for the same step carries its round or a counter."""
    return f"{run_id}.{step}.{kind}"


def step_message_options(run_id: str, step: str, plan: StepPlan) -> dict[str, Any]:
    """Time limits and the errback of one step's message. The errback is how a step killed by
    its hard time limit is noticed: Celery calls it in the worker's main process, where the
    killed child can no longer report anything."""
    options: dict[str, Any] = {
        "link_error": [
            app.signature(
                STEP_FAILED_TASK,
                kwargs={"run_id": run_id, "step": step},
                task_id=callback_task_id(run_id, step, "failed"),
            )
        ],
    }
    if plan.time_limit_s:
        options["time_limit"] = plan.time_limit_s
    if plan.soft_time_limit_s:
        options["soft_time_limit"] = plan.soft_time_limit_s
    if plan.priority:
        options["priority"] = plan.priority
    return options


def step_kwargs(run_id: str, step: str, plan_digest: str = "") -> dict[str, str]:
    """A step message's arguments: references only (the run, the step, the plan's digest)."""
    kwargs = {"run_id": run_id, "step": step}
    if plan_digest:
        kwargs["plan"] = plan_digest
    return kwargs


def send_step(
    run_id: str,
    step: str,
    plan: StepPlan,
    plan_digest: str = "",
    *,
    countdown: float | None = None,
    task_id: str | None = None,
) -> SentStep:
    """Send one step of ``run_id`` (its plan says which role) to that role's queue."""
    sent: SentStep = app.send_task(
        agent_task_name(plan.agent or ""),
        kwargs=step_kwargs(run_id, step, plan_digest),
        task_id=task_id or step_task_id(run_id, step),
        countdown=countdown,
        ignore_result=True,
        add_to_parent=False,
        result_cls=SentStep,
        **step_message_options(run_id, step, plan),
    )
    return sent


def send_steps(run_id: str, steps: Iterable[tuple[str, StepPlan]], plan_digest: str = "") -> list[str]:
    """Send each ``(step, plan)``; returns the steps sent."""
    sent = []
    for step, plan in steps:
        send_step(run_id, step, plan, plan_digest)
        sent.append(step)
    return sent
