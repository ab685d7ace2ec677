"""Spec -> plan -> step messages. Pure: no I/O, unit-testable.

A step's plan carries what its worker needs to hand off without a coordinator hop: its
successors and their dependencies (the script that stores its result claims those that became
ready, atomically, so a fan-in is dispatched exactly once), whether the workflow is *inline*
(no gate, router or validator: readiness is decided in that script) and how many results end
the run. Workflows with gates, routers or validators are dispatched by :mod:`coordinator.engine.dispatch`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from graphlib import TopologicalSorter
from typing import Any

from celery import Celery
from celery.canvas import Signature

from coordinator.engine.specs import Workflow
from proj.messages import step_message_options, step_task_id
from proj.plan import GatePlan, RunPlan, StepPlan, ValidationPlan
from proj.policy import RetryPolicy
from proj.queues import agent_task_name


def step_plans(
    workflow: Workflow,
    defaults: Callable[[str | None], dict[str, Any]] | None = None,
    children: dict[str, str] | None = None,
) -> dict[str, str]:
    """Each step's plan (:class:`proj.plan.StepPlan`) as JSON, stored once per workflow version.

    ``children``: the spec JSON of each child workflow, by name (``specs.child_specs``).
    ``defaults(agent)`` gives the role's (else the settings') retry policy and time limits; a
    step's own values win. Resolving them here, once, means every worker applies the same ones.
    """
    branches: dict[str, set[str]] = {}
    successors: dict[str, dict[str, tuple[str, ...]]] = {step.name: {} for step in workflow.steps}
    for step in workflow.steps:
        for router, label in (step.when or {}).items():
            branches.setdefault(router, set()).add(label)
        for dep in step.after:
            successors[dep][step.name] = tuple(step.after)
    # Inline: nothing in the workflow needs the coordinator's view of the whole run to decide
    # what runs next (gates, routers' branches, validator loops, failures handed to a human).
    # A map's members are dispatched by the coordinator's dispatch too: how many there are is
    # known only when the list arrives.
    inline = not any(
        s.approval or s.when or s.validation or s.map or s.workflow or s.on_failure == "escalate_to_approval"
        for s in workflow.steps
    )
    plans: dict[str, StepPlan] = {}
    for index, step in enumerate(workflow.steps):
        base = defaults(step.agent) if defaults else {}
        validation = None
        if step.validation is not None:
            check = check_step_name(step.name)
            validation = ValidationPlan(**step.validation.model_dump(), check_step=check)
            # The validator runs as a step of its own (its own queue), never dispatched by readiness:
            # the generator hands it each candidate.
            check_base = defaults(step.validation.agent) if defaults else {}
            plans[check] = StepPlan(
                agent=step.validation.agent,
                params=step.validation.params,
                index=index,
                retry=check_base.get("retry") or RetryPolicy(),
                validates=step.name,
            )
        plans[step.name] = StepPlan(
            agent=step.agent,
            after=tuple(step.after),
            params=step.params,
            index=index,
            retry=step.retry or base.get("retry") or RetryPolicy(),
            time_limit_s=step.time_limit_s or base.get("time_limit_s"),
            soft_time_limit_s=step.soft_time_limit_s
            or (step.time_limit_s * 0.9 if step.time_limit_s else base.get("soft_time_limit_s")),
            on_failure=step.on_failure,
            priority=step.priority,
            successors=successors[step.name],
            inline=inline,
            run_steps=len(workflow.steps) if inline else 0,
            when=step.when,
            # A router: its choice is checked against these before it is stored.
            branches=tuple(sorted(branches[step.name])) if step.name in branches else None,
            approval=GatePlan(**step.approval.model_dump(by_alias=True)) if step.approval else None,
            validation=validation,
            uses={dep: tuple(fields) for dep, fields in step.uses.items()} if step.uses else None,
            map=step.map,
            on_member_failure=step.on_member_failure,
            workflow=step.workflow,
            child_spec=(children or {}).get(step.workflow) if step.workflow else None,
            input_from=step.input_from,
        )
    return {name: plan.to_json() for name, plan in plans.items()}


def plan_digest(plans: dict[str, str], spec_json: str = "") -> str:
    """The content digest that names a workflow version's plan: runs of the same version (same
    spec, same resolved policies) share one stored plan and every process's cached copy."""
    canonical = json.dumps([spec_json, sorted(plans.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def check_step_name(step: str) -> str:
    """The validator step of a validated step (``~`` cannot appear in a step name)."""
    return f"{step}~validate"


def is_check(plan: StepPlan) -> bool:
    return plan.is_check


def real_steps(plan: RunPlan) -> set[str]:
    """The workflow's own steps (without validator steps), which a run must finish."""
    return {name for name, step in plan.items() if not step.is_check}


def is_gate(plan: StepPlan) -> bool:
    return plan.is_gate


def skipped_steps(plan: RunPlan, decisions: dict[str, str]) -> set[str]:
    """Steps that will never run, given the gates decided so far (``decisions``: step -> state).

    Behind an approved gate its ``on_reject`` branch is skipped; behind a rejected gate with an
    ``on_reject`` branch, everything but that branch is skipped; a step with ``when`` is skipped
    when its router chose another branch. Skipping is transitive.
    """
    order = TopologicalSorter({name: step.after for name, step in plan.items()}).static_order()
    skipped: set[str] = set()
    for name in order:
        for router, label in (plan[name].when or {}).items():
            chosen = decisions.get(router, "")
            if chosen.startswith("route:") and chosen != f"route:{label}":
                skipped.add(name)
        for dep in plan[name].after:
            gate = plan[dep].approval
            decided = decisions.get(dep)
            if dep in skipped:
                skipped.add(name)
            elif gate and decided in ("approved", "rejected"):
                is_branch = name == gate.on_reject
                if (decided == "approved") == is_branch:
                    skipped.add(name)
    return skipped


def ready_steps(
    plan: RunPlan, done: set[str], dispatched: set[str], skipped: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """Steps not yet dispatched nor skipped whose dependencies have all stored results."""
    return [
        name
        for name, step in plan.items()
        if name not in dispatched
        and name not in skipped
        and not step.is_check
        and all(dep in done for dep in step.after)
    ]


def agent_signature(app: Celery, run_id: str, step: str, plan: RunPlan) -> Signature:
    """One step's message as a signature (what :func:`proj.messages.send_step` sends)."""
    return app.signature(
        agent_task_name(plan[step].agent or ""),
        kwargs={"run_id": run_id, "step": step},
        task_id=step_task_id(run_id, step),
        immutable=True,
        ignore_result=True,
        **step_message_options(run_id, step, plan[step]),
    )
