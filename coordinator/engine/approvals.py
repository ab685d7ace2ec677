"""Resuming parked runs: the one code path behind the webhook, Python, the CLI and deadlines.

Exactly one decision wins per approval: the transition is one Lua script that only acts on a
pending approval. Every other call gets :class:`ApprovalConflictError` carrying the decision
that won, and changes nothing.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from jsonschema.validators import validator_for

from coordinator.engine.checkpoints import ApprovalId, ApprovalView, get_approval, send_notifications
from coordinator.engine.dispatch import dispatch_admitted, dispatch_ready
from coordinator.engine.operator import retry_step
from proj.budget import Budget
from proj.errors import (
    ApprovalClosedError,
    ApprovalConflictError,
    ApprovalDataError,
    ApprovalNotFoundError,
    ForbiddenError,
)
from proj.messages import send_step
from proj.registry import Registry

Decision = Literal["approve", "reject"]
TIMEOUT_ACTOR = "deadline"


def resume(
    registry: Registry,
    aid: str,
    decision: Decision,
    *,
    comment: str = "",
    data: Any = None,
    actor: str = "python",
    check_decider: bool = False,
) -> ApprovalView:
    """Decide approval ``aid``; on approve the steps after the gate are dispatched.

    Raises :class:`ApprovalNotFoundError`, :class:`ApprovalDataError` (data fails the gate's
    schema; nothing changes), :class:`ApprovalConflictError` (already decided) or
    :class:`ApprovalClosedError` (the run ended).
    """
    view = get_approval(registry, registry.settings, aid)
    if check_decider:
        gate = registry.plan_of(view.run_id).get(view.step)
        deciders = gate.approval.deciders if gate is not None and gate.approval is not None else None
        if deciders is not None and actor not in deciders:
            raise ForbiddenError(actor, f"decide {aid} (its deciders: {', '.join(deciders)})")
    # The gate's schema covers a decision's data: an approval's always ({} when none is sent), a
    # rejection's when it sends any (a reason-less reject stays possible).
    if view.data_schema is not None and (decision == "approve" or data is not None):
        _check_data(aid, view.data_schema, {} if data is None else data)
    _apply(registry, aid, decision, comment=comment, data=data, actor=actor, kind=view.kind)
    return get_approval(registry, registry.settings, aid)


def _check_data(aid: str, schema: dict[str, Any], data: Any) -> None:
    validator = validator_for(schema)(schema)
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    except Exception as exc:  # a schema stored before gate schemas were checked (a remote $ref)
        reason = f"the gate's schema cannot be applied: {type(exc).__name__}"
        raise ApprovalDataError(aid, [{"loc": ["data"], "msg": reason, "type": "schema_unusable"}]) from None
    problems = [
        {"loc": ["data", *error.absolute_path], "msg": error.message, "type": f"json_schema.{error.validator}"}
        for error in errors
    ]
    if problems:
        raise ApprovalDataError(aid, problems)


def _apply(
    registry: Registry,
    aid: str,
    decision: str,
    *,
    comment: str,
    data: Any,
    actor: str,
    due_before: float | None = None,
    kind: str = "gate",
) -> str:
    """Run the decision script and follow up; returns its status (``ok``, ``escalated``,
    ``not_due``) or raises why nothing changed."""
    parsed = ApprovalId.parse(aid)
    run_id, step = parsed.run_id, parsed.step
    plan = registry.plan_of(run_id)
    gate = plan[step].approval if step in plan else None
    output: Any = {"decision": decision, "comment": comment, "data": data, "decided_by": actor}
    if not gate:
        # A failed step escalated to a human: an approval supplies the step's own output.
        output = {} if data is None else data
    reply = registry.decide(
        run_id,
        step,
        aid,
        decision,
        comment=comment,
        data_json=json.dumps(data),
        actor=actor,
        output_json=json.dumps(output),
        reject_ends_run=gate is None or gate.on_reject is None,
        due_before=due_before,
        retry=kind == "budget",
    )
    status = reply[0]
    if status == "missing":
        raise ApprovalNotFoundError(aid)
    if status == "closed":
        raise ApprovalClosedError(aid, reply[1])
    if status == "decided":
        raise ApprovalConflictError(aid, reply[1], reply[2])
    if status == "escalated":
        send_notifications(registry.settings, aid, "approval.escalated")
    elif status == "ok" and decision == "reject":
        # A reject may have ended the run and freed an admission slot (nothing else to send:
        # an on_reject branch is dispatched too).
        dispatch_ready(registry, run_id)
        dispatch_admitted(registry)
    elif status == "ok" and kind == "budget" and decision == "approve":
        _raise_budget(registry, run_id, step, data, actor)
    elif status == "ok":
        dispatch_ready(registry, run_id)
    return status


def _raise_budget(registry: Registry, run_id: str, step: str, data: Any, actor: str) -> None:
    """A budget approval was approved: new limits (``data``'s, else each doubled), then the step
    that hit the limit and every other step stopped by it run again."""
    spend = registry.spend(run_id)
    if spend is not None:
        limits = {**spend.budget.raised().model_dump(), **(data or {})}
        registry.raise_budget(run_id, Budget.model_validate(limits), actor)
    snapshot = registry.snapshot(run_id)
    send_step(run_id, step, snapshot.plan[step], snapshot.plan_digest)
    records = registry.step_records(run_id)
    for waiting in sorted(registry.attention(run_id)):
        if records.get(waiting, {}).get("error", "").startswith("budget exceeded:"):
            retry_step(registry, run_id, waiting, actor)
    dispatch_ready(registry, run_id)


def sweep_deadlines(registry: Registry, now: float | None = None) -> list[tuple[str, str]]:
    """Apply ``on_timeout`` to every approval past its deadline; returns (approval, action).

    Safe with any number of sweepers at once: the decision script acts only on a pending
    approval whose deadline has passed, so each deadline fires exactly once.
    """
    now = registry.server_time() if now is None else now
    fired = []
    for aid in registry.due_approval_ids(now):
        try:
            view = get_approval(registry, registry.settings, aid)
            action = view.on_timeout
            status = _apply(
                registry,
                aid,
                action,
                comment=f"deadline passed ({action})",
                data=None,
                actor=TIMEOUT_ACTOR,
                due_before=now,
                kind=view.kind,
            )
        except (ApprovalConflictError, ApprovalClosedError, ApprovalNotFoundError):
            continue  # another sweeper or a reviewer got there first
        if status != "not_due":
            fired.append((aid, action))
    return fired
