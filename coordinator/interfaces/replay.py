"""Bulk replay and dead letters: recover many runs at once, and see what keeps failing.

``replay`` finds the runs in a state (of a workflow, started within a window) and, for each,
plans one action: a run waiting in ``needs_attention`` gets its failed steps retried (fresh
attempts); a run that ended ``failed``, ``cancelled`` or ``budget_exceeded`` is rerun from its
first step without a result (:func:`coordinator.interfaces.runner.rerun`: what succeeded before
it is reused). It is a dry run unless ``execute=True``, and paced to ``rate_per_s`` actions a
second, so a replay of thousands does not flood the queues at once.

``dead_letters`` groups the steps given up on (the escalations stream: retries exhausted, or a
permanent error) by their error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from coordinator.engine.operator import retry_step
from coordinator.interfaces.runner import rerun
from proj.errors import AgentchordError, InvalidStartOptionError
from proj.registry import Registry

REPLAYABLE_STATES = ("needs_attention", "failed", "cancelled", "budget_exceeded")
_PAGE = 200


class ReplayAction(BaseModel):
    """What a replay does (or did) to one run."""

    run_id: str
    workflow: str
    state: str = Field(description="The run's state when the replay planned the action.")
    action: Literal["retry", "rerun", "none"]
    steps: list[str] = Field(description="retry: the failed steps; rerun: the step it reruns from.")
    outcome: str = Field(default="planned", description="planned (dry run), done, or the error that stopped it.")
    new_run_id: str | None = Field(default=None, description="rerun: the new run.")


class DeadLetterStep(BaseModel):
    run_id: str
    step: str
    attempts: int
    at: float


class DeadLetterGroup(BaseModel):
    """Steps given up on with the same error (its first line)."""

    error: str
    count: int
    steps: list[DeadLetterStep]


def parse_window(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``2d`` (or plain seconds) -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    try:
        seconds = float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        raise InvalidStartOptionError("since", f"{text!r} is not a duration like 90s, 15m, 1h or 2d") from None
    if seconds <= 0:
        raise InvalidStartOptionError("since", f"{text!r} must be positive")
    return seconds


def plan_replay(
    registry: Registry, state: str, workflow: str = "", since_s: float | None = None, limit: int = 1000
) -> list[ReplayAction]:
    """The action for each run in ``state`` (and of ``workflow``, created in the last ``since_s``
    seconds), newest first, at most ``limit``. Reads only; changes nothing."""
    if state not in REPLAYABLE_STATES:
        raise InvalidStartOptionError("state", f"replay takes runs in {', '.join(REPLAYABLE_STATES)}, not {state!r}")
    horizon = time.time() - since_s if since_s else 0.0
    actions: list[ReplayAction] = []
    cursor: str | None = None
    while len(actions) < limit:
        rows, cursor = registry.runs_page(min(_PAGE, limit - len(actions)), cursor, state=state, workflow=workflow)
        for row in rows:
            if float(row["created_at"] or 0) < horizon:
                return actions
            actions.append(_action_for(registry, row["id"], row["workflow"], state))
        if cursor is None:
            break
    return actions


def _action_for(registry: Registry, run_id: str, workflow: str, state: str) -> ReplayAction:
    records = registry.step_records(run_id)
    plan = registry.plan_of(run_id)
    if state == "needs_attention":
        failed = [name for name in plan if records.get(name, {}).get("state") == "failed"]
        return ReplayAction(run_id=run_id, workflow=workflow, state=state, action="retry", steps=failed)
    without_result = [name for name in plan if records.get(name, {}).get("state") != "succeeded"]
    if not without_result or not plan:
        return ReplayAction(run_id=run_id, workflow=workflow, state=state, action="none", steps=[])
    return ReplayAction(run_id=run_id, workflow=workflow, state=state, action="rerun", steps=without_result[:1])


def replay(
    registry: Registry,
    state: str,
    workflow: str = "",
    since_s: float | None = None,
    *,
    execute: bool = False,
    rate_per_s: float = 5.0,
    limit: int = 1000,
    on_action: Callable[[ReplayAction], None] | None = None,
) -> list[ReplayAction]:
    """Plan the replay (:func:`plan_replay`) and, with ``execute``, carry it out at
    ``rate_per_s`` actions a second. An action that fails (the run moved on meanwhile, say) is
    reported in its ``outcome`` and the replay goes on. ``on_action`` sees each as it is done."""
    if rate_per_s <= 0:
        raise InvalidStartOptionError("rate", f"must be positive, got {rate_per_s}")
    actions = plan_replay(registry, state, workflow, since_s, limit)
    if not execute:
        return actions
    interval = 1.0 / rate_per_s
    for index, action in enumerate(actions):
        if index:
            time.sleep(interval)  # pacing the replay, on purpose: a rate limit, not a wait for an event
        try:
            if action.action == "retry":
                for step in action.steps:
                    retry_step(registry, action.run_id, step, actor="replay")
            elif action.action == "rerun":
                new = rerun(action.run_id, action.steps[0], settings=registry.settings)
                action.new_run_id = new.id
            action.outcome = "done" if action.action != "none" else "nothing to replay"
        except AgentchordError as exc:
            action.outcome = f"{type(exc).__name__}: {exc}"
        if on_action is not None:
            on_action(action)
    return actions


def dead_letters(registry: Registry, since_s: float | None = None, limit: int = 10_000) -> list[DeadLetterGroup]:
    """Steps given up on in the last ``since_s`` seconds (all kept, else), grouped by the first
    line of their error, the biggest group first."""
    low = f"{int((time.time() - since_s) * 1000)}-0" if since_s else "-"
    groups: dict[str, list[DeadLetterStep]] = {}
    for entry_id, fields in registry.client.xrevrange(registry.keys.escalations, "+", low, count=limit):
        error = (fields.get("error") or "").strip().splitlines()[0][:300] if fields.get("error") else "(no error)"
        groups.setdefault(error, []).append(
            DeadLetterStep(
                run_id=fields.get("run_id", ""),
                step=fields.get("step", ""),
                attempts=int(fields.get("attempts") or 0),
                at=int(str(entry_id).split("-")[0]) / 1000,
            )
        )
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]))
    return [DeadLetterGroup(error=error, count=len(steps), steps=steps) for error, steps in ranked]
