"""Patterns from the field as workflow features: router branches, single-model collapse."""

from __future__ import annotations

import pytest
import redis

from coordinator import Step, Workflow, start
from coordinator.engine.specs import Validate
from coordinator.interfaces.demo import SAMPLE_DIFF
from proj.errors import RunNeedsAttentionError, WorkflowSpecError
from proj.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")

ROUTES = {"bug": ["crash", "error"], "feature": ["add", "support"]}


def routed(default: str = "bug") -> Workflow:
    return Workflow(
        name="routed",
        steps=[
            Step(name="route", agent="router", params={"routes": ROUTES, "default": default}),
            Step(name="fix", agent="echo", after=["route"], when={"route": "bug"}),
            Step(name="build", agent="echo", after=["route"], when={"route": "feature"}),
            Step(name="close", agent="echo", after=["fix"]),
        ],
    )


def test_router_runs_only_the_chosen_branch_with_the_original_input(client: redis.Redis) -> None:
    run = start(routed(), input={"text": "please add support for yaml"})
    results = run.wait(timeout=60)
    assert results["route"]["route"] == "feature"
    assert set(results) == {"route", "build"}
    assert results["build"] == {"step": "build", "saw": ["route"], "input_keys": ["text"]}
    steps = run.status().steps
    assert steps["fix"].state == "skipped" and steps["close"].state == "skipped"
    assert steps["fix"].body_runs == 0


def test_router_choice_outside_the_declared_branches_is_an_error_not_a_fallthrough(client: redis.Redis) -> None:
    run = start(routed(default="question"), input={"text": "hello there"})
    with pytest.raises(
        RunNeedsAttentionError, match="router chose 'question'; the workflow's branches are bug, feature"
    ):
        run.wait(timeout=60)
    assert run.status().steps["build"].state == "pending"


def test_when_must_name_a_dependency() -> None:
    with pytest.raises(WorkflowSpecError, match="`when` on 'route', which must also be in its `after`"):
        Workflow(
            name="w", steps=[Step(name="route", agent="router"), Step(name="x", agent="echo", when={"route": "a"})]
        )


def test_collapsed_run_is_one_model_call_with_the_same_answers(settings: Settings, client: redis.Redis) -> None:
    normal = start("code_review", input={"diff": SAMPLE_DIFF})
    single = start("code_review", input={"diff": SAMPLE_DIFF}, collapse=True)
    orchestrated, collapsed = normal.wait(timeout=60), single.wait(timeout=60)["all"]
    assert collapsed == orchestrated  # the offline model is deterministic: same work, one call
    t_normal, t_single = normal.timings(), single.timings()
    assert [s.step for s in t_single.steps] == ["all"] and t_single.broker_messages == 1
    assert t_normal.broker_messages == 4  # one per agent step: no coordinator messages
    assert t_single.reinjected_tokens == 0 < t_normal.reinjected_tokens
    from tests.test_cli import agentchord

    compared = agentchord(settings, "run", "code_review", "--input", '{"diff": "+print(1)"}', "--compare")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "code_review__collapsed" in compared.stdout and "prompt tokens" in compared.stdout


def test_handoff_record_is_read_and_extended_by_each_step(client: redis.Redis) -> None:
    wf = Workflow(
        name="handoff",
        handoff=True,
        steps=[
            Step(name="investigate", agent="hypothesizer"),
            Step(name="left", agent="handoff_reader", after=["investigate"]),
            Step(name="right", agent="handoff_reader", after=["investigate"]),
            Step(name="wrap", agent="handoff_reader", after=["left", "right"]),
        ],
    )
    run = start(wf, input={"request": "users see each other's carts", "constraints": ["no downtime"]})
    results = run.wait(timeout=60)
    # What was complete when `left` began: `investigate`, and `right` too if that sibling happened
    # to finish first (the record is read at the start, not frozen at the fork).
    assert results["left"]["completed"][0] == "investigate"
    assert set(results["left"]["completed"]) <= {"investigate", "right"}
    assert results["left"]["hypothesis"] == "the cache key omits the tenant"
    assert sorted(results["wrap"]["completed"]) == ["investigate", "left", "right"]
    record = run.handoff()
    assert record is not None
    assert record.original_request == "users see each other's carts" and record.constraints == ["no downtime"]
    assert record.steps_completed[0].step == "investigate" and len(record.steps_completed) == 4
    assert record.rejected_approaches[0].why == "hides the bug" and record.confidence == 0.7
    # The record went into the prompts, counted as re-injected context.
    assert all(s.reinjected_tokens > 0 for s in run.timings().steps if s.step != "investigate")


def test_workflows_without_a_handoff_record_have_none(client: redis.Redis) -> None:
    run = start(Workflow(name="plain", steps=[Step(name="a", agent="handoff_reader")]), input={})
    assert run.wait(timeout=60)["a"]["completed"] is None and run.handoff() is None


def validated(confidence: float = 0.5, stubborn: bool = False, max_rounds: int = 3) -> Workflow:
    gate = Validate(agent="validator", threshold=0.85, max_rounds=max_rounds, params={"required": ["text"]})
    return Workflow(
        name="validated",
        steps=[
            Step(name="draft", agent="drafter", params={"confidence": confidence, "stubborn": stubborn}, validate=gate),
            Step(name="publish", agent="echo", after=["draft"]),
        ],
    )


def test_low_confidence_output_is_critiqued_and_regenerated_until_it_passes(client: redis.Redis) -> None:
    run = start(validated(), input={})
    results = run.wait(timeout=60)
    assert results["draft"]["text"] == "fixed after: draft: missing or empty 'text'"
    assert results["publish"]["saw"] == ["draft"]
    types = [e.type for e in run.events() if e.type.startswith("validation")]
    assert types == ["validation_requested", "validation_failed", "validation_requested", "validation_passed"]


def test_confident_output_skips_the_validator(client: redis.Redis) -> None:
    run = start(validated(confidence=0.9), input={})
    assert run.wait(timeout=60)["draft"] == {"text": "", "confidence": 0.9}
    assert not [e for e in run.events() if e.type.startswith("validation")]
    assert run.status().steps["draft~validate"].body_runs == 0


def test_validation_loop_is_bounded_then_escalates(client: redis.Redis) -> None:
    run = start(validated(stubborn=True, max_rounds=2), input={})
    with pytest.raises(
        RunNeedsAttentionError, match=r"validation failed after 2 round\(s\): draft: missing or empty 'text'"
    ):
        run.wait(timeout=60)
    assert [e.type for e in run.events()].count("validation_failed") == 1


def test_router_pattern_on_the_openai_compatible_backend(client: redis.Redis, fake_openai: object) -> None:
    wf = routed().model_copy(
        update={"steps": [routed().steps[0].model_copy(update={"agent": "router_llm"}), *routed().steps[1:]]}
    )
    run = start(wf, input={"text": "app crash with an error [[429 routerllm]]"})
    results = run.wait(timeout=60)
    assert results["route"]["route"] == "bug" and set(results) == {"route", "fix", "close"}
    assert [e.type for e in run.events()].count("step_retrying") == 1  # the 429, retried after Retry-After
