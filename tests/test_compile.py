"""Spec -> plan -> step messages: each step knows its successors, so its worker can hand off."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from coordinator import Approval, Step, Workflow
from coordinator.engine.compile import agent_signature, is_gate, ready_steps, skipped_steps, step_plans
from proj.celery import app
from proj.plan import RunPlan, parse_plan


def plan_of(workflow: Workflow) -> RunPlan:
    return {name: parse_plan(raw) for name, raw in step_plans(workflow).items()}


DIAMOND = Workflow(
    name="d",
    steps=[
        Step(name="review", agent="reviewer"),
        Step(name="tests", agent="test_writer", after=["review"]),
        Step(name="docs", agent="doc_generator", after=["review"]),
        Step(name="merge", agent="merger", after=["tests", "docs"]),
    ],
)


def test_ready_steps_follow_results_not_dispatch_order() -> None:
    plan = plan_of(DIAMOND)
    assert ready_steps(plan, done=set(), dispatched=set()) == ["review"]
    assert ready_steps(plan, done={"review"}, dispatched={"review"}) == ["tests", "docs"]
    assert ready_steps(plan, done={"review", "tests"}, dispatched={"review", "tests", "docs"}) == []
    assert ready_steps(plan, done={"review", "tests", "docs"}, dispatched={"review", "tests", "docs"}) == ["merge"]


def test_each_step_plan_names_its_successors_and_their_dependencies() -> None:
    plan = plan_of(DIAMOND)
    assert plan["review"].successors == {"tests": ("review",), "docs": ("review",)}
    assert plan["tests"].successors == {"merge": ("tests", "docs")}
    assert plan["merge"].successors == {}
    # No gate, router or validator: the step's own store script decides readiness and the run's end.
    assert all(step.inline and step.run_steps == 4 for step in plan.values())


def test_workflows_with_gates_routers_or_validators_are_not_inline() -> None:
    assert not any(step.inline for step in plan_of(GATED).values())


def test_a_step_message_names_its_role_run_and_step_and_stores_no_celery_result() -> None:
    sig = agent_signature(app, "r1", "review", plan_of(DIAMOND))
    assert sig.task == "agents.reviewer"
    assert sig.kwargs == {"run_id": "r1", "step": "review"}
    assert sig.options["task_id"] == "r1.review"
    assert sig.options["ignore_result"] is True
    assert [errback["task"] for errback in sig.options["link_error"]] == ["coordinator.step_failed"]


def test_messages_carry_references_not_context() -> None:
    sig = agent_signature(app, "r1", "review", plan_of(DIAMOND))
    assert len(json.dumps(sig.kwargs)) < 64


GATED = Workflow(
    name="g",
    steps=[
        Step(name="draft", agent="reviewer"),
        Step(name="gate", approval=Approval(on_reject="fix"), after=["draft"]),
        Step(name="ship", agent="merger", after=["gate"]),
        Step(name="fix", agent="reviewer", after=["gate"]),
        Step(name="announce", agent="merger", after=["ship"]),
    ],
)


def test_nothing_is_skipped_before_a_gate_is_decided() -> None:
    assert skipped_steps(plan_of(GATED), {"gate": "pending"}) == set()


def test_approved_gate_skips_its_reject_branch_only() -> None:
    assert skipped_steps(plan_of(GATED), {"gate": "approved"}) == {"fix"}


def test_rejected_gate_skips_everything_but_the_reject_branch_transitively() -> None:
    plan = plan_of(GATED)
    skipped = skipped_steps(plan, {"gate": "rejected"})
    assert skipped == {"ship", "announce"}
    assert ready_steps(plan, done={"draft", "gate"}, dispatched={"draft", "gate"}, skipped=skipped) == ["fix"]


def test_gates_are_marked_in_the_plan_and_agents_are_not() -> None:
    plan = plan_of(GATED)
    assert is_gate(plan["gate"]) and not is_gate(plan["ship"])
    assert plan["gate"].approval is not None and plan["gate"].approval.on_reject == "fix"


def test_a_stored_plan_reads_back_as_the_same_frozen_typed_plan() -> None:
    wf = Workflow(
        name="typed",
        steps=[
            Step(name="a", agent="reviewer", time_limit_s=30),
            Step(name="g", approval=Approval(prompt="Ship?", timeout_s=60, on_reject="fix"), after=["a"]),
            Step(name="fix", agent="reviewer", after=["g"]),
        ],
    )
    plan = plan_of(wf)
    assert plan["a"].time_limit_s == 30 and plan["a"].soft_time_limit_s == 27 and plan["a"].agent == "reviewer"
    assert plan["g"].approval is not None and plan["g"].approval.timeout_s == 60 and plan["g"].is_gate
    assert parse_plan(plan["g"].to_json()) == plan["g"]
    with pytest.raises(ValidationError):
        plan["a"].agent = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="unexpected"):
        parse_plan('{"agent": "reviewer", "unexpected": 1}')
