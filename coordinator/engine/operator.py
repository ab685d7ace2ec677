"""Operator actions on a run that needs attention: retry a failed step, skip it with a supplied
output, or abort the run. One code path behind Python, the CLI and the HTTP API."""

from __future__ import annotations

import json
from typing import Any

from agents.runtime import steps_with_roles
from coordinator.engine.children import start_child
from coordinator.engine.dispatch import dispatch_admitted, dispatch_ready
from coordinator.engine.fanout import open_map
from proj.errors import RunNotFoundError, StepNotFoundError, StepStateError
from proj.messages import send_steps
from proj.plan import member_of, plan_for
from proj.registry import ADMITTED, Registry


def _state_of(registry: Registry, run_id: str, step: str) -> str:
    records = registry.step_records(run_id)
    if not registry.run_record(run_id):
        raise RunNotFoundError(run_id)
    return records.get(step, {}).get("state", "unknown step")


def require_step(registry: Registry, run_id: str, step: str | None = None) -> None:
    """:class:`RunNotFoundError` unless the run exists; :class:`StepNotFoundError` unless ``step``
    (when given) is one of its steps. Callers check this before reading a request's body."""
    if not registry.run_record(run_id):
        raise RunNotFoundError(run_id)
    if step is not None:
        plan = registry.plan_of(run_id)
        if plan_for(plan, step) is None:
            raise StepNotFoundError(run_id, step, list(plan))


def retry_step(registry: Registry, run_id: str, step: str, actor: str = "operator") -> None:
    """Run a failed step again, with a fresh set of attempts; the run continues from there."""
    require_step(registry, run_id, step)
    if not registry.operator_retry(run_id, step, actor):
        raise StepStateError(run_id, step, "retry", _state_of(registry, run_id, step))
    snapshot = registry.snapshot(run_id)
    plan = plan_for(snapshot.plan, step)
    assert plan is not None  # require_step checked it
    if plan.workflow:
        # A fresh child run: the failed one stays as it ended.
        registry.client.hincrby(registry.run_keys(run_id).steps, f"{step}.child_attempt", 1)
        start_child(registry, run_id, step)
    elif plan.map and member_of(step) is None:
        # A map whose list was wrong: read it again and send the members.
        open_map(registry, run_id, step, plan, snapshot.plan_digest)
    else:
        # A role removed by a deploy since the run started fails the step again, naming the role.
        send_steps(run_id, steps_with_roles(registry, run_id, [(step, plan)]), snapshot.plan_digest)
    # Steps that became ready while the run waited for the operator (nothing claims in that
    # state) are dispatched now.
    dispatch_ready(registry, run_id)


def skip_step(registry: Registry, run_id: str, step: str, output: Any, actor: str = "operator") -> None:
    """Give a failed step ``output`` as its result and dispatch what it unblocks."""
    require_step(registry, run_id, step)
    plan = plan_for(registry.plan_of(run_id), step)
    joins = tuple(name for name, deps in plan.successors.items() if len(deps) > 1) if plan and plan.inline else ()
    if not registry.operator_skip(run_id, step, actor, json.dumps(output), joins):
        raise StepStateError(run_id, step, "skip", _state_of(registry, run_id, step))
    member = member_of(step) if plan and plan.map else None
    if member is not None:
        # The output stands in for the member's result: count it towards the map's join.
        members = registry.map_members(run_id, member[0]) or 0
        registry.finish_member(run_id, step, member[0], "", members, {}, count_only=True)
    dispatch_ready(registry, run_id)


def abort_run(registry: Registry, run_id: str, reason: str = "", actor: str = "operator") -> bool:
    """End the run ``failed``; True if this call ended it (False: it had ended already)."""
    require_step(registry, run_id)
    ended = registry.finish_run(run_id, "failed", f"aborted by {actor}" + (f": {reason}" if reason else ""))
    if ended == ADMITTED:
        dispatch_admitted(registry)
    return bool(ended)
