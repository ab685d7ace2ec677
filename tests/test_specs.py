"""Workflow specs: every bad-input case fails before dispatch, with a precise message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from coordinator import Approval, Step, Workflow, builtin_workflow, builtin_workflows, load_workflow, start
from proj.errors import (
    CycleError,
    DuplicateStepError,
    InvalidApprovalError,
    InvalidInputError,
    SpecFileError,
    UnknownAgentError,
    UnknownDependencyError,
    UnknownWorkflowError,
)
from proj.settings import Settings


def diamond(**overrides: str) -> Workflow:
    return Workflow(
        name="code_review",
        steps=[
            Step(name="review", agent=overrides.get("review", "reviewer")),
            Step(name="tests", agent="test_writer", after=["review"]),
            Step(name="docs", agent="doc_generator", after=["review"]),
            Step(name="merge", agent="merger", after=["tests", "docs"]),
        ],
    )


def test_builtin_code_review_is_the_diamond() -> None:
    assert "code_review" in builtin_workflows()
    assert builtin_workflow("code_review").steps == diamond().steps


def test_unknown_builtin_names_the_known_ones() -> None:
    with pytest.raises(UnknownWorkflowError, match=r"unknown workflow 'nope'.*code_review"):
        builtin_workflow("nope")


def test_unknown_agent_names_step_and_known_agents() -> None:
    with pytest.raises(UnknownAgentError) as info:
        diamond(review="reviwer").check_agents(["doc_generator", "merger", "reviewer", "test_writer"])
    assert str(info.value) == (
        "unknown agent 'reviwer' in step 'review'; known agents: doc_generator, merger, reviewer, test_writer "
        "(a role of your own: list its module in AGENTCHORD_AGENT_MODULES)"
    )


def test_duplicate_step_name_is_rejected() -> None:
    with pytest.raises(DuplicateStepError, match="step name 'a' is used more than once"):
        Workflow(name="w", steps=[Step(name="a", agent="reviewer"), Step(name="a", agent="merger")])


def test_unknown_dependency_is_rejected() -> None:
    with pytest.raises(UnknownDependencyError, match="step 'b' depends on 'x', which is not a step"):
        Workflow(name="w", steps=[Step(name="a", agent="reviewer"), Step(name="b", agent="merger", after=["x"])])


def test_cycle_is_rejected_with_its_path() -> None:
    with pytest.raises(CycleError) as info:
        Workflow(
            name="w",
            steps=[
                Step(name="a", agent="reviewer", after=["c"]),
                Step(name="b", agent="reviewer", after=["a"]),
                Step(name="c", agent="reviewer", after=["b"]),
            ],
        )
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert str(info.value).startswith("the workflow has a cycle: ")


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError, match="a -> a"):
        Workflow(name="w", steps=[Step(name="a", agent="reviewer", after=["a"])])


def test_missing_step_name_in_file_is_reported_by_field(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("name: w\nsteps:\n  - agent: reviewer\n")
    with pytest.raises(SpecFileError, match=r"wf.yaml: steps.0.name: Field required"):
        load_workflow(path)


def test_malformed_yaml_is_reported_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: w\nsteps: [\n  - {name: a\n")
    with pytest.raises(SpecFileError, match=r"bad.yaml: malformed YAML"):
        load_workflow(path)


def test_yaml_structural_error_keeps_its_own_message(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text("name: w\nsteps:\n  - {name: a, agent: reviewer, after: [a]}\n")
    with pytest.raises(CycleError):
        load_workflow(path)


def test_json_workflow_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(diamond().model_dump()))
    assert load_workflow(path) == diamond()


def test_missing_file_is_a_spec_file_error(tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match="No such file"):
        load_workflow(tmp_path / "absent.yaml")


def test_empty_workflow_is_rejected() -> None:
    with pytest.raises(SpecFileError, match="steps: List should have at least 1 item"):
        from coordinator import parse_workflow

        parse_workflow({"name": "w", "steps": []})


def test_input_that_is_not_json_is_rejected_before_anything_runs() -> None:
    # No Redis is reachable at this URL: the error must come before any connection.
    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(InvalidInputError, match="not JSON-serializable"):
        start(diamond(), input={"diff": object()}, settings=settings)
    with pytest.raises(InvalidInputError, match="expected a JSON object"):
        start(diamond(), input=["not", "a", "dict"], settings=settings)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not JSON-serializable"):
        start(diamond(), input={"x": float("nan")}, settings=settings)


def test_unknown_agent_is_rejected_by_start_before_anything_runs() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(UnknownAgentError, match="unknown agent 'reviwer'"):
        start(diamond(review="reviwer"), input={}, settings=settings)


def test_step_needs_exactly_one_of_agent_or_approval() -> None:
    with pytest.raises(InvalidApprovalError, match="exactly one of `agent`"):
        Step(name="a")
    with pytest.raises(InvalidApprovalError, match="exactly one of `agent`"):
        Step(name="a", agent="reviewer", approval=Approval())


def test_on_reject_must_name_a_step_behind_the_gate() -> None:
    with pytest.raises(InvalidApprovalError, match="`on_reject` must name a step that lists 'gate'"):
        Workflow(
            name="w",
            steps=[
                Step(name="a", agent="reviewer"),
                Step(name="gate", approval=Approval(on_reject="a"), after=["a"]),
            ],
        )


def test_gate_schema_must_be_a_json_schema_and_can_be_a_pydantic_model() -> None:
    with pytest.raises(InvalidApprovalError, match="not a valid JSON Schema"):
        Workflow(name="w", steps=[Step(name="gate", approval=Approval(schema={"type": "nonsense"}))])

    class Edits(BaseModel):
        note: str

    gate = Approval(schema=Edits)
    assert gate.data_schema is not None and gate.data_schema["required"] == ["note"]


def test_gate_in_yaml_loads_and_unknown_shown_step_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "gated.yaml"
    path.write_text(
        "name: w\nsteps:\n  - {name: a, agent: reviewer}\n"
        "  - {name: gate, after: [a], approval: {prompt: 'ok?', show: [zz], timeout_s: 5, on_timeout: approve}}\n"
    )
    with pytest.raises(InvalidApprovalError, match="`show` names 'zz'"):
        load_workflow(path)


def test_builtin_gated_workflow_loads() -> None:
    gate = builtin_workflow("code_review_gated").step("approve").approval
    assert gate is not None and gate.on_timeout == "reject" and gate.timeout_s == 86400
