"""Child workflows: a step that runs a whole workflow as a run of its own.

When the step is claimed, its child run is started (its spec comes from the parent's plan,
resolved when the parent started) with an idempotency key derived from the parent run, the step
and the step's retry count: a repeated dispatch, a redelivery or the watchdog find the same child
and never start a second. The child records its parent (before any of its steps is sent) and the
parent's step records the child. When the child ends, the script that ends it queues it for
settling (``finish_run`` in ``proj/lua/prelude.lua``); whoever ended it settles it
(:func:`coordinator.engine.dispatch.dispatch_admitted`, and the watchdog's sweep as a backstop):
succeeded, its results ``{step: output}`` become the step's output; ended otherwise, the step
waits for an operator with the child's end named.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from coordinator.engine.dispatch import dispatch_ready, set_children
from coordinator.engine.launch import launch
from coordinator.engine.specs import Workflow
from proj.errors import AgentchordError
from proj.plan import StepPlan
from proj.registry import TERMINAL_STATES, Registry

logger = logging.getLogger(__name__)


def child_key(run_id: str, step: str, attempt: int) -> str:
    """The idempotency key of the child run of ``step``: one child per parent step and retry."""
    return f"{run_id}.{step}.child{attempt}"


def start_child(registry: Registry, run_id: str, step: str) -> str | None:
    """Start (or find) the child run of ``step`` and link it; None when it cannot start (the step
    then waits for an operator with the reason)."""
    plan = registry.plan_of(run_id).get(step)
    if plan is None or plan.workflow is None:
        return None
    record = registry.run_record(run_id)
    attempt = int(registry.client.hget(registry.run_keys(run_id).steps, f"{step}.child_attempt") or 0)
    try:
        child_input = _child_input(registry, run_id, plan, record)
        if not plan.child_spec:
            raise AgentchordError(f"the plan holds no spec of workflow {plan.workflow!r}")
        child_id = launch(
            Workflow.model_validate_json(plan.child_spec),
            child_input,
            idempotency_key=child_key(run_id, step, attempt),
            allow_different_input=True,
            tenant=record.get("tenant") or None,
            settings=registry.settings,
            parent=(run_id, step),
        )
    except AgentchordError as exc:
        error = f"cannot start child workflow {plan.workflow!r}: {exc}"
        logger.warning("run %s step %s: %s", run_id, step, error)
        registry.escalate(run_id, step, "*", error, "", 0, f"workflow:{plan.workflow}")
        return None
    registry.link_child(run_id, step, child_id)
    if registry.run_record(child_id).get("state") in TERMINAL_STATES:
        settle_child(registry, child_id)  # it ended before this (a repeat after a crash)
    return child_id


def _child_input(registry: Registry, run_id: str, plan: StepPlan, record: dict[str, str]) -> dict[str, Any]:
    if plan.input_from is None:
        value: Any = json.loads(record.get("input") or "{}")
    else:
        value = registry.results_of(run_id, [plan.input_from]).get(plan.input_from)
    if not isinstance(value, dict):
        source = plan.input_from or "the run's input"
        raise AgentchordError(f"its input ({source}) is a {type(value).__name__}, not an object")
    return value


def settle_child(registry: Registry, child_id: str) -> None:
    """Give the parent's step the ended child's outcome (once: storing a step's result and
    escalating it each check the step's state)."""
    record = registry.run_record(child_id)
    parent, step = record.get("parent_run"), record.get("parent_step")
    if not parent or not step or record.get("state") not in TERMINAL_STATES:
        return
    plans = registry.plan_of(parent)
    if step not in plans:
        return
    if registry.step_records(parent).get(step, {}).get("child_run") not in (None, child_id):
        return  # an earlier child of a step retried since: its end changes nothing
    if record["state"] == "succeeded":
        results = registry.results(child_id)
        order = registry.plan_of(child_id)
        output = {name: results[name] for name in order if name in results}
        registry.finish_step(parent, step, json.dumps(output), {"child_run": child_id}, plans)
        dispatch_ready(registry, parent)
        return
    error = f"child run {child_id} ({record.get('workflow')}) ended {record['state']}"
    if record.get("error"):
        error += f": {record['error']}"
    registry.escalate(parent, step, "*", error, "", 0, f"workflow:{plans[step].workflow}")


def child_runs(registry: Registry, run_id: str) -> list[str]:
    """The child runs the steps of ``run_id`` started (the latest per step)."""
    return [r["child_run"] for r in registry.step_records(run_id).values() if r.get("child_run")]


set_children(start_child, settle_child)
