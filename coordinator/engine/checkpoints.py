"""Approval checkpoints: parking a run at a gate, and reading what is parked.

When a gate becomes ready, the run *parks*: the request (prompt, the outputs the reviewer is
shown, the answer schema, the deadline) is written to Redis with the run's state set to
``waiting_approval``, and nothing else happens: no task, worker slot or process waits for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from proj.celery import app
from proj.errors import ApprovalNotFoundError, InvalidCursorError
from proj.plan import RunPlan
from proj.queues import NOTIFY_TASK
from proj.registry import Registry
from proj.settings import Settings


@dataclass(frozen=True)
class ApprovalId:
    """The id of the approval at gate ``step`` of ``run_id``, written ``<run_id>.<step>`` (run ids
    never contain a dot). Parsed once, where an id comes in; passed on typed."""

    run_id: str
    step: str

    def __str__(self) -> str:
        return f"{self.run_id}.{self.step}"

    @classmethod
    def parse(cls, value: str) -> ApprovalId:
        """``<run_id>.<step>``; anything else names no approval (:class:`ApprovalNotFoundError`)."""
        run_id, dot, step = value.partition(".")
        if not dot or not run_id or not step:
            raise ApprovalNotFoundError(value)
        return cls(run_id, step)


def approval_id(run_id: str, step: str) -> str:
    """The id of the approval at gate ``step`` of ``run_id``, as a string."""
    return str(ApprovalId(run_id, step))


class ApprovalView(BaseModel):
    """An approval as reviewers, the API and the CLI see it."""

    id: str
    run_id: str
    step: str
    workflow: str
    state: str  # pending | approved | rejected | closed
    kind: str = "gate"  # gate: an Approval step; failure: a failed step escalated to a human
    prompt: str
    context: dict[str, Any]
    data_schema: dict[str, Any] | None
    requested_at: float
    deadline: float | None
    on_timeout: str
    escalated: bool
    decision: str | None = None
    comment: str | None = None
    data: Any = None
    actor: str | None = None
    decided_at: float | None = None
    resume_url: str


def park_gate(registry: Registry, settings: Settings, run_id: str, step: str, plan: RunPlan) -> bool:
    """Write the checkpoint for gate ``step`` and notify; True if this call parked the run."""
    gate = plan[step].approval
    assert gate is not None, f"step {step!r} is not an approval gate"
    shown = list(gate.show or plan[step].after)
    outputs = registry.results_of(run_id, shown)
    request = {
        "prompt": gate.prompt,
        "context": outputs,
        "schema": gate.data_schema,
        "on_timeout": gate.on_timeout,
        "on_reject": gate.on_reject,
        "workflow": registry.run_record(run_id).get("workflow", ""),
    }
    aid = approval_id(run_id, step)
    parked = registry.park(run_id, step, aid, json.dumps(request), gate.timeout_s)
    if parked:
        send_notifications(settings, aid, "approval.requested")
    return parked


def park_failure(registry: Registry, settings: Settings, run_id: str, step: str, error: str) -> bool:
    """Ask a human about a failed step: approve with ``data`` as the step's output, or reject
    to end the run. The step's context is what the reviewer sees."""
    plan = registry.plan_of(run_id)[step]
    request = {
        "kind": "failure",
        "prompt": f"Step {step!r} failed: {error}. Approve with `data` as its output to continue, or reject.",
        "context": registry.results_of(run_id, list(plan.after)),
        "schema": None,
        "on_timeout": "escalate",
        "on_reject": None,
        "workflow": registry.run_record(run_id).get("workflow", ""),
    }
    aid = approval_id(run_id, step)
    parked = registry.park(run_id, step, aid, json.dumps(request), None)
    if parked:
        send_notifications(settings, aid, "approval.requested")
    return parked


def park_budget(registry: Registry, settings: Settings, run_id: str, step: str, error: str) -> bool:
    """Ask a human to raise a run's budget: approve (with ``data``, new limits, or without: each
    limit doubled) and the step that hit the limit runs again; reject and the run ends
    ``budget_exceeded``."""
    spend = registry.spend(run_id)
    if spend is None:
        return False
    proposed = spend.budget.raised()
    request = {
        "kind": "budget",
        "prompt": f"Step {step!r} stopped: {error}. Raise the budget to "
        f"{proposed.model_dump_json(exclude_none=True, include=_LIMIT_FIELDS)} (or send your own limits as "
        "`data`)? Rejecting ends the run budget_exceeded.",
        "context": {"spent": spend.model_dump(mode="json"), "proposed": proposed.model_dump(mode="json")},
        "schema": _RAISE_SCHEMA,
        "on_timeout": "reject",
        "on_reject": None,
        "workflow": registry.run_record(run_id).get("workflow", ""),
    }
    aid = approval_id(run_id, step)
    parked = registry.park(run_id, step, aid, json.dumps(request), None)
    if parked:
        send_notifications(settings, aid, "approval.requested")
    return parked


_LIMIT_FIELDS = {"max_cost_usd", "max_tokens", "max_model_calls", "max_wall_s"}
# What a reviewer may send when approving a budget raise: new limits (any left out are doubled).
_RAISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": "number", "exclusiveMinimum": 0} for name in sorted(_LIMIT_FIELDS)},
    "additionalProperties": False,
}


def send_notifications(settings: Settings, aid: str, event: str) -> None:
    """One Celery task per configured URL, on the ``notifications`` queue."""
    for index, url in enumerate(settings.approval_webhook_urls):
        app.signature(NOTIFY_TASK, kwargs={"approval_id": aid, "url": url, "event": event}).apply_async(
            task_id=f"{aid}.{event}.{index}"
        )


def get_approval(registry: Registry, settings: Settings, aid: str) -> ApprovalView:
    parsed = ApprovalId.parse(aid)
    record = registry.approval(parsed.run_id, parsed.step)
    if not record:
        raise ApprovalNotFoundError(aid)
    return _view(record, settings)


def pending_approvals(
    registry: Registry, settings: Settings, limit: int = 100, cursor: str | None = None
) -> tuple[list[ApprovalView], str | None]:
    """One page of pending approvals, oldest first, and the cursor of the next page (None: this
    was the last). ``cursor``: what the previous page returned; a malformed one is
    :class:`InvalidCursorError`."""
    after = None
    if cursor is not None:
        when, _, aid = cursor.partition("|")
        try:
            after = (float(when), str(ApprovalId.parse(aid)))
        except (ValueError, ApprovalNotFoundError):
            raise InvalidCursorError(cursor) from None
    page = registry.pending_approval_ids(limit, after)
    views = []
    for _, aid in page:
        parsed = ApprovalId.parse(aid)
        record = registry.approval(parsed.run_id, parsed.step)
        if record:
            views.append(_view(record, settings))
    following = f"{page[-1][0]:.6f}|{page[-1][1]}" if len(page) == limit else None
    return views, following


def _view(record: dict[str, str], settings: Settings) -> ApprovalView:
    request = json.loads(record["request"])
    data = record.get("data")
    return ApprovalView(
        id=record["id"],
        run_id=record["run_id"],
        step=record["step"],
        workflow=request.get("workflow", ""),
        state=record["state"],
        kind=request.get("kind", "gate"),
        prompt=request["prompt"],
        context=request["context"],
        data_schema=request.get("schema"),
        requested_at=float(record["requested_at"]),
        deadline=float(record["deadline"]) if record.get("deadline") else None,
        on_timeout=request["on_timeout"],
        escalated=record.get("escalated") == "1",
        decision=record.get("decision"),
        comment=record.get("comment"),
        data=json.loads(data) if data else None,
        actor=record.get("actor"),
        decided_at=float(record["decided_at"]) if record.get("decided_at") else None,
        resume_url=f"{settings.public_url.rstrip('/')}/approvals/{record['id']}",
    )
