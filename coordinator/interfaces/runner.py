"""Start runs and follow them from any process sharing the Redis: the module callers need.

from coordinator import start, get_run, builtin_workflow
run = start(builtin_workflow("code_review"), input={"diff": "..."}, idempotency_key="pr-42")
results = run.wait(timeout=30)      # {"review": {...}, "tests": {...}, ...}
get_run(run.id).status().state      # "succeeded"
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal, overload

from pydantic import ValidationError

from agents.handoff import HandoffRecord
from coordinator.engine.approvals import Decision, resume
from coordinator.engine.checkpoints import ApprovalView, approval_id, get_approval
from coordinator.engine.children import child_runs
from coordinator.engine.compile import skipped_steps
from coordinator.engine.dispatch import dispatch_admitted
from coordinator.engine.launch import launch
from coordinator.engine.operator import abort_run, retry_step, skip_step
from coordinator.engine.specs import Step, Workflow, resolve_workflow
from coordinator.observation.live import follow_events
from coordinator.observation.status import RunStatus, StepStatus
from coordinator.observation.timing import RunTimings, compute_timings
from proj.admission import DEFAULT_TENANT
from proj.budget import Budget, BudgetSpend
from proj.celery import app, current_settings
from proj.errors import (
    ApprovalNotFoundError,
    InvalidStartOptionError,
    RerunNotAllowedError,
    RunFailedError,
    RunNeedsAttentionError,
    RunNotFoundError,
    RunTimeoutError,
    StepNotFoundError,
)
from proj.messages import step_task_id
from proj.plan import RunPlan
from proj.registry import ADMITTED, TERMINAL_STATES, Event, Registry, registry_for
from proj.settings import Settings


class Run:
    """A handle on a run; holds only its id and a registry connection."""

    def __init__(self, run_id: str, registry: Registry) -> None:
        self.id = run_id
        self._registry = registry
        self._plan: RunPlan | None = None

    def __repr__(self) -> str:
        return f"Run({self.id!r})"

    def _record(self) -> dict[str, str]:
        record = self._registry.run_record(self.id)
        if not record:
            raise RunNotFoundError(self.id)
        return record

    def handoff(self) -> HandoffRecord | None:
        """The run's handoff record (workflows with ``handoff: true``)."""
        raw = self._record().get("handoff")
        return HandoffRecord.model_validate_json(raw) if raw else None

    def plan(self) -> RunPlan:
        """Each step's plan, in the workflow's order (written once at start: read once, kept)."""
        if self._plan is None:
            self._plan = self._registry.plan_of(self.id)
        return self._plan

    def status(self) -> RunStatus:
        record = self._record()
        snapshot = self._registry.snapshot(self.id)
        plan = snapshot.plan
        skipped = skipped_steps(plan, snapshot.approvals)
        records = self._registry.step_records(self.id)
        steps = {
            name: StepStatus(
                state="skipped" if name in skipped else records.get(name, {}).get("state", "pending"),
                agent=step.agent or (f"(workflow {step.workflow})" if step.workflow else "(approval)"),
                worker=records.get(name, {}).get("worker"),
                error=records.get(name, {}).get("error"),
                body_runs=int(records.get(name, {}).get("body_runs", 0)),
                agent_version=records.get(name, {}).get("agent_version"),
                reused_from=records.get(name, {}).get("reused_from"),
                child_run=records.get(name, {}).get("child_run"),
                members=int(records[name]["members"]) if "members" in records.get(name, {}) else None,
                members_done=int(records.get(name, {}).get("members_done", 0)),
            )
            for name, step in plan.items()
        }
        return RunStatus(
            id=self.id,
            workflow=record["workflow"],
            state=record["state"],
            created_at=float(record["created_at"]),
            finished_at=float(record["finished_at"]) if record.get("finished_at") else None,
            error=record.get("error"),
            steps=steps,
            tenant=record.get("tenant") or DEFAULT_TENANT,
            budget=self._registry.spend(self.id) if record.get("budget") else None,
            workflow_version=self._registry.workflow_version(snapshot.plan_digest),
            parent_run=record.get("parent_run"),
            parent_step=record.get("parent_step"),
            rerun_of=record.get("rerun_of"),
            rerun_from=record.get("rerun_from"),
        )

    def results(self) -> dict[str, Any]:
        """Outputs of the steps that have finished so far, in the workflow's step order."""
        results = self._registry.results(self.id)
        return {step: results[step] for step in self.plan() if step in results}

    def wait_for_approval(self, timeout: float = 60.0) -> ApprovalView:
        """Block until the run parks at a gate (on its event stream); that approval."""
        event = self._registry.wait_event(self.id, {"approval_requested"}, timeout)
        if event is None:
            raise RunTimeoutError(self.id, timeout, self._record()["state"])
        return get_approval(self._registry, self._registry.settings, event.fields["approval_id"])

    def wait(self, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the run ends (on its event stream, not on Celery results).

        Returns every step's output; raises :class:`RunFailedError` if the run failed or was
        cancelled, :class:`RunNeedsAttentionError` if a step was escalated to an operator, and
        :class:`RunTimeoutError` if it is still going after ``timeout`` seconds.
        """
        state = self._registry.wait_ended(self.id, timeout) or self._record().get("state", "")
        if state == "needs_attention":
            records = self._registry.step_records(self.id)
            failed = sorted(s for s in self._registry.attention(self.id))
            detail = "; ".join(f"step {s!r} failed: {records.get(s, {}).get('error', '')}" for s in failed)
            raise RunNeedsAttentionError(self.id, state, detail)
        if state not in TERMINAL_STATES:
            raise RunTimeoutError(self.id, timeout, state)
        if state != "succeeded":
            raise RunFailedError(self.id, state, self._record().get("error"))
        return self.results()

    def approvals(self) -> list[ApprovalView]:
        """This run's approvals (pending and decided), in step order."""
        settings = self._registry.settings
        gates = self._registry.snapshot(self.id).gates
        return [
            get_approval(self._registry, settings, approval_id(self.id, step)) for step in self.plan() if step in gates
        ]

    def approve(
        self, decision: Decision = "approve", *, comment: str = "", data: Any = None, step: str | None = None
    ) -> ApprovalView:
        """Decide this run's pending approval (``step`` picks one when several are pending)."""
        return resume(self._registry, self._pending_id(step), decision, comment=comment, data=data, actor="python")

    def reject(self, *, comment: str = "", data: Any = None, step: str | None = None) -> ApprovalView:
        return self.approve("reject", comment=comment, data=data, step=step)

    def _pending_id(self, step: str | None) -> str:
        if step is not None:
            return approval_id(self.id, step)
        gates = self._registry.snapshot(self.id).gates
        pending = [s for s, state in gates.items() if state == "pending"]
        if not pending and len(gates) == 1:
            # The only gate, already decided or closed: resume() then says which decision won.
            pending = list(gates)
        if len(pending) != 1:
            raise ApprovalNotFoundError(
                f"{self.id}.<step> (pending gates: {', '.join(pending) or 'none'}; pass step=...)"
            )
        return approval_id(self.id, pending[0])

    def rerun(
        self, from_step: str, *, input: dict[str, Any] | None = None, params: dict[str, dict[str, Any]] | None = None
    ) -> Run:
        """A new run from ``from_step`` that reuses this run's unchanged outputs (see :func:`rerun`)."""
        return rerun(self.id, from_step, input=input, params=params, settings=self._registry.settings)

    def retry_step(self, step: str) -> None:
        """Operator: run a failed step again (fresh attempts)."""
        retry_step(self._registry, self.id, step, actor="python")

    def skip_step(self, step: str, output: Any) -> None:
        """Operator: give a failed step ``output`` as its result and continue."""
        skip_step(self._registry, self.id, step, output, actor="python")

    def abort(self, reason: str = "") -> bool:
        """Operator: end the run ``failed``."""
        return abort_run(self._registry, self.id, reason, actor="python")

    def cancel(self) -> bool:
        """Stop the run: no step is dispatched after this, and queued step tasks are revoked.

        Returns False when the run had already ended."""
        ended = self._registry.finish_run(self.id, "cancelled")
        if not ended:
            return False
        if ended == ADMITTED:
            dispatch_admitted(self._registry)
        records = self._registry.step_records(self.id)
        pending = [
            step_task_id(self.id, s)
            for s, r in records.items()
            if r.get("state") in ("dispatched", "running", "retrying")
        ]
        if pending:
            app.control.revoke(pending)
        for child in child_runs(self._registry, self.id):
            Run(child, self._registry).cancel()  # cancelling the parent cancels its children
        return True

    @overload
    def events(self, *, follow: Literal[False] = False) -> list[Event]: ...

    @overload
    def events(self, *, follow: Literal[True], timeout_s: float | None = None) -> Iterator[Event]: ...

    def events(self, *, follow: bool = False, timeout_s: float | None = None) -> list[Event] | Iterator[Event]:
        """The run's event log, oldest first. ``follow=True``: an iterator over it that then yields
        each new event as it happens, until the run ends (or ``timeout_s`` passes)."""
        if follow:
            return follow_events(self._registry, self.id, None, timeout_s)
        return self._registry.events(self.id)

    def budget(self) -> BudgetSpend | None:
        """The run's spend against its budget; None when it has none."""
        self._record()
        return self._registry.spend(self.id)

    def timings(self) -> RunTimings:
        """The run's coordination-tax accounting (see coordinator.observation.timing)."""
        prices = self._registry.settings.model_prices
        records = self._registry.step_records(self.id)
        return compute_timings(self._record(), self.plan(), records, self.events(), prices)


def _registry(settings: Settings | None) -> Registry:
    return registry_for(settings or current_settings())


def start(
    workflow: Workflow | str,
    input: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    *,
    collapse: bool = False,
    allow_different_input: bool = False,
    budget: Budget | dict[str, Any] | None = None,
    tenant: str | None = None,
    settings: Settings | None = None,
) -> Run:
    """Validate ``workflow`` and its input, create the run and dispatch its first steps.

    With an ``idempotency_key`` already used, returns that run and dispatches nothing new; if that
    run was started with another workflow version or input, raises
    :class:`IdempotencyConflictError` (naming both) unless ``allow_different_input``.
    ``collapse=True`` runs the whole workflow as one model call instead (the single-model
    baseline the orchestration tax is measured against). ``budget`` caps the run's model spend
    (else the workflow's, else ``AGENTCHORD_DEFAULT_BUDGET``); ``tenant`` names whose run it is
    for the admission limits (a run over them is created ``queued`` and starts when admitted).
    """
    settings = settings or current_settings()
    wf = resolve_workflow(workflow) if isinstance(workflow, str) else workflow
    run_id = launch(
        wf,
        input,
        idempotency_key=idempotency_key,
        collapse=collapse,
        allow_different_input=allow_different_input,
        budget=budget,
        tenant=tenant,
        settings=settings,
    )
    return Run(run_id, _registry(settings))


def rerun(
    run_id: str,
    from_step: str,
    *,
    input: dict[str, Any] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    tenant: str | None = None,
    settings: Settings | None = None,
) -> Run:
    """Start a new run of ``run_id``'s workflow (the plan it ran, not today's file) that runs
    ``from_step`` and everything after it, and reuses the stored output of every other step
    whose inputs are unchanged (see :mod:`coordinator.engine.rerun`): no model call for those.

    ``input`` replaces the run's input (default: the same); ``params`` overrides steps' params,
    ``{step: {name: value}}``; ``tenant`` (default: the run's) is whose slots it takes. The new
    run records ``rerun_of``; the original's event log gets a ``rerun`` event.

    Raises :class:`RunNotFoundError`, :class:`StepNotFoundError`, :class:`RerunNotAllowedError`
    (the run has not ended, or its plan expired) or :class:`InvalidStartOptionError` (bad
    ``params``); nothing is created then.
    """
    settings = settings or current_settings()
    registry = _registry(settings)
    record = registry.run_record(run_id)
    if not record:
        raise RunNotFoundError(run_id)
    if record["state"] not in TERMINAL_STATES:
        raise RerunNotAllowedError(
            run_id, f"it is {record['state']}; rerun a run that has ended (wait for it, or cancel it first)"
        )
    spec_json = registry.spec_of(run_id)
    if not spec_json:
        raise RerunNotAllowedError(run_id, "its workflow spec is no longer stored (its plan expired)")
    wf = Workflow.model_validate_json(spec_json)
    names = [step.name for step in wf.steps]
    if from_step not in names:
        raise StepNotFoundError(run_id, from_step, names)
    wf = _with_params(wf, params)
    budget = Budget.model_validate_json(record["budget"]) if record.get("budget") else None
    new_input = json.loads(record.get("input") or "{}") if input is None else input
    tenant = tenant or record.get("tenant")
    new_id = launch(wf, new_input, budget=budget, tenant=tenant, settings=settings, rerun_of=(run_id, from_step))
    return Run(new_id, registry)


def _with_params(workflow: Workflow, params: dict[str, dict[str, Any]] | None) -> Workflow:
    """``workflow`` with each named step's params updated from ``params``."""
    if not params:
        return workflow
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise InvalidStartOptionError("params", "expected an object {step: {param: value}}")
    steps = {step.name: step for step in workflow.steps}
    unknown = sorted(set(params) - set(steps))
    if unknown:
        raise InvalidStartOptionError("params", f"no step {', '.join(map(repr, unknown))}; steps: {', '.join(steps)}")
    try:
        return workflow.model_copy(
            update={
                "steps": [
                    Step.model_validate({**s.model_dump(), "params": {**s.params, **params.get(s.name, {})}})
                    for s in workflow.steps
                ]
            }
        )
    except ValidationError as exc:
        raise InvalidStartOptionError("params", exc.errors()[0]["msg"]) from None


def get_run(run_id: str, *, settings: Settings | None = None) -> Run:
    """A handle on an existing run; raises :class:`RunNotFoundError` if there is none."""
    registry = _registry(settings)
    if not registry.run_record(run_id):
        raise RunNotFoundError(run_id)
    return Run(run_id, registry)


def list_runs(limit: int = 20, *, settings: Settings | None = None) -> list[dict[str, str]]:
    """The newest runs in the registry, newest first."""
    return _registry(settings).list_runs(limit)
