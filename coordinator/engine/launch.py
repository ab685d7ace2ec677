"""Create a run and send its first steps: what ``start``, a rerun and a child step share.

Validates the workflow against the roles this process knows, compiles and stores its plan (once
per version), creates the run under its admission limits in one script and sends what is ready.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pydantic import ValidationError

import agents
from agents.handoff import HandoffRecord
from coordinator.engine.compile import plan_digest, step_plans
from coordinator.engine.dispatch import dispatch_ready
from coordinator.engine.rerun import reusable_outputs, reused_dependencies
from coordinator.engine.specs import Step, Workflow, child_specs
from proj.admission import admission_for
from proj.budget import Budget
from proj.errors import IdempotencyConflictError, InvalidInputError, InvalidStartOptionError
from proj.messages import send_steps
from proj.plan import RunPlan
from proj.registry import Registry, registry_for
from proj.settings import Settings, check_time_limit
from proj.tracing import current_traceparent, setup_tracing, span


def launch(
    wf: Workflow,
    input: dict[str, Any] | None,
    *,
    idempotency_key: str | None = None,
    collapse: bool = False,
    allow_different_input: bool = False,
    budget: Budget | dict[str, Any] | None = None,
    tenant: str | None = None,
    settings: Settings,
    rerun_of: tuple[str, str] | None = None,
    parent: tuple[str, str] | None = None,
) -> str:
    """Create a run of ``wf`` and dispatch its first steps; its id. ``rerun_of`` (run id, step):
    a rerun, which first stores the outputs it reuses from that run. ``parent`` (run id, step):
    a child run, linked to that step before any of its steps is sent (so its end always reaches
    the parent)."""
    agents.load_agent_modules(settings.agent_modules)
    wf.check_agents(agents.known_roles())
    wf.check_uses(agents.output_fields)
    run_budget = _budget(budget) or wf.budget or settings.default_budget
    admission = admission_for(settings, tenant, wf.name)
    if collapse:
        wf = collapsed_workflow(wf)
    input_json = _input_json(input)
    registry = registry_for(settings)
    run_id = uuid.uuid4().hex[:20]
    # Child workflows are resolved now, by the process that knows them, and kept in the plan.
    plans = step_plans(wf, agents.role_defaults, child_specs(wf))
    for step, raw in plans.items():
        limit = json.loads(raw).get("time_limit_s")
        if limit:
            check_time_limit(limit, settings, f"the time limit of step {step!r}")
    traced = setup_tracing(settings)
    with span(f"agentchord.run {wf.name}", **{"agentchord.workflow": wf.name, "agentchord.run_id": run_id}):
        handoff = HandoffRecord.for_input(input or {}).model_dump_json() if wf.handoff else ""
        spec_json = wf.to_json()
        digest = plan_digest(plans, spec_json)
        registry.store_plan(digest, plans, spec_json)
        parsed = registry.plan_by_digest(digest)
        # An inline workflow's first steps are claimed by the script that creates the run (a
        # rerun's by the dispatch after its reused outputs are stored).
        first = () if rerun_of else tuple(step for step, plan in parsed.items() if plan.inline and not plan.after)
        fingerprint = hashlib.sha256(f"{digest} {input_json}".encode()).hexdigest()[:20]
        budget_json = run_budget.model_dump_json(exclude_none=True) if run_budget else ""
        created, run_id, claimed = registry.create_run(
            run_id, wf.name, fingerprint, input_json, digest, idempotency_key, handoff, first, budget_json, admission
        )
        if not created and claimed and claimed[0] not in ("", fingerprint) and not allow_different_input:
            raise IdempotencyConflictError(str(idempotency_key), run_id)
        if created and parent:
            registry.link_parent(run_id, *parent)
        if created and rerun_of:
            _seed_rerun(registry, run_id, rerun_of, parsed, json.loads(input_json), wf.handoff)
        if created and claimed == ["*queued"]:
            # Over its admission limits: it waits; whoever ends a run admits and dispatches it.
            return run_id
        if not created:
            claimed = []
        if created and traced:
            registry.client.hset(registry.run_keys(run_id).run, "traceparent", current_traceparent())
        if claimed:
            send_steps(run_id, ((step, parsed[step]) for step in claimed), digest)
        else:
            # Also on a repeated key: re-dispatching is idempotent and heals a start that
            # crashed between creating the run and sending its first tasks.
            dispatch_ready(registry, run_id)
    return run_id


def _seed_rerun(
    registry: Registry, run_id: str, rerun_of: tuple[str, str], plan: RunPlan, input: dict[str, Any], handoff: bool
) -> None:
    original, from_step = rerun_of
    reused = reusable_outputs(
        plan,
        from_step,
        registry.step_records(original),
        registry.raw_results(original),
        input,
        agents.get_role,
        keeps_handoff=handoff,
    )
    registry.seed_reused(run_id, original, from_step, reused, reused_dependencies(plan, reused))


def collapsed_workflow(workflow: Workflow) -> Workflow:
    """``workflow`` as one step of the ``collapsed`` role (gates cannot be collapsed)."""
    steps = [
        {"name": s.name, "agent": s.agent, "after": s.after, "params": s.params} for s in workflow.steps if s.agent
    ]
    return Workflow(
        name=f"{workflow.name}__collapsed",
        description=f"{workflow.name} as a single model call",
        steps=[Step(name="all", agent="collapsed", params={"steps": steps})],
    )


def _budget(value: Budget | dict[str, Any] | None) -> Budget | None:
    """A start's budget, checked before anything is created."""
    if value is None or isinstance(value, Budget):
        return value
    if not isinstance(value, dict):
        raise InvalidStartOptionError("budget", f"expected a Budget or a dict, got {type(value).__name__}")
    try:
        return Budget.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'budget'}: {e['msg']}" for e in exc.errors())
        raise InvalidStartOptionError("budget", problems) from None


def _input_json(value: dict[str, Any] | None) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InvalidInputError(f"expected a JSON object (dict), got {type(value).__name__}")
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"it is not JSON-serializable ({exc})") from None
