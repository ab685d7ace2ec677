"""Spec -> canvas: chains for lone steps, chords for steps that feed a common step."""

from __future__ import annotations

import json

from celery import chord
from celery.canvas import _chain

from coordinator import Approval, Step, Workflow
from coordinator.compile import canvas_for, is_gate, join_groups, ready_steps, skipped_steps, step_plans
from proj.celery import app


def plan_of(workflow: Workflow) -> dict[str, dict[str, object]]:
    return {name: json.loads(raw) for name, raw in step_plans(workflow).items()}


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


def test_steps_feeding_one_join_are_grouped_and_independent_ones_are_not() -> None:
    wf = Workflow(
        name="w",
        steps=[
            Step(name="a", agent="reviewer"),
            Step(name="b", agent="reviewer"),
            Step(name="c", agent="reviewer"),
            Step(name="ab", agent="merger", after=["a", "b"]),
            Step(name="c2", agent="merger", after=["c"]),
        ],
    )
    assert join_groups(["a", "b", "c"], plan_of(wf)) == [["a", "b"], ["c"]]


def test_one_ready_step_is_a_chain_into_the_callback() -> None:
    canvas = canvas_for(app, "r1", ["review"], plan_of(DIAMOND))
    assert isinstance(canvas, _chain)
    agent_sig, callback = canvas.tasks
    assert agent_sig.task == "agents.reviewer"
    assert agent_sig.kwargs == {"run_id": "r1", "step": "review"}
    assert agent_sig.options["task_id"] == "r1.review"
    assert callback.task == "coordinator.advance" and callback.kwargs == {"run_id": "r1"}


def test_several_ready_steps_are_a_chord_with_the_callback_as_body() -> None:
    canvas = canvas_for(app, "r1", ["tests", "docs"], plan_of(DIAMOND))
    assert isinstance(canvas, chord)
    assert [sig.task for sig in canvas.tasks] == ["agents.test_writer", "agents.doc_generator"]
    assert canvas.body.task == "coordinator.advance"


def test_messages_carry_references_not_context() -> None:
    canvas = canvas_for(app, "r1", ["review"], plan_of(DIAMOND))
    assert len(json.dumps(canvas.tasks[0].kwargs)) < 64


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
    assert plan["gate"]["approval"]["on_reject"] == "fix"
