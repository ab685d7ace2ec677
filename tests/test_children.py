"""Child workflows on real workers: a step runs a whole workflow as a child run linked both ways,
whose results are the step's output; one child per step however often it is dispatched;
cancelling the parent cancels the child; a failed child waits for an operator; bad specs fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import Run, Step, Workflow, register_workflow, start
from coordinator.engine.children import start_child
from proj.errors import UnknownWorkflowError, WorkflowSpecError
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import wait_for

pytestmark = pytest.mark.usefixtures("worker", "client")

AUDIT = register_workflow(
    Workflow(
        name="audit_child",
        steps=[
            Step(name="scan", agent="echo"),
            Step(name="report", agent="echo", after=["scan"]),
        ],
    )
)
SLOW = register_workflow(Workflow(name="slow_child", steps=[Step(name="wait", agent="echo", params={"sleep_s": 3})]))


def parent(child: str, **step: object) -> Workflow:
    return Workflow(
        name=f"parent_of_{child}",
        steps=[
            Step(name="review", agent="lister"),
            Step(name="deep_dive", workflow=child, after=["review"], **step),  # type: ignore[arg-type]
            Step(name="merge", agent="collector", after=["deep_dive"]),
        ],
    )


def test_a_child_run_is_the_steps_output_and_linked_both_ways(settings: Settings) -> None:
    run = start(parent("audit_child", input_from="review"), input={"files": ["a.py"]})
    results = run.wait(timeout=60)
    status = run.status()
    child_id = status.steps["deep_dive"].child_run
    assert child_id and status.steps["deep_dive"].agent == "(workflow audit_child)"
    child = Run(child_id, registry_for(settings))
    assert (child.status().parent_run, child.status().parent_step) == (run.id, "deep_dive")
    assert child.status().workflow == "audit_child" and child.status().state == "succeeded"
    # The child's input is the review's output; its results are the step's output.
    assert set(results["deep_dive"]) == {"scan", "report"}
    assert results["deep_dive"]["scan"]["input_keys"] == ["count", "files"]
    assert results["merge"]["got"]["deep_dive"] == results["deep_dive"]


def test_a_repeated_dispatch_never_starts_a_second_child(settings: Settings) -> None:
    registry = registry_for(settings)
    run = start(parent("audit_child"), input={"files": []})
    run.wait(timeout=60)
    first = run.status().steps["deep_dive"].child_run
    # What a redelivery or the watchdog does: start the step's child again.
    assert start_child(registry, run.id, "deep_dive") == first
    children = [r for r in registry.list_runs(200) if r["workflow"] == "audit_child"]
    assert sum(1 for r in children if Run(r["id"], registry).status().parent_run == run.id) == 1


def test_cancelling_the_parent_cancels_the_child(settings: Settings) -> None:
    run = start(parent("slow_child"), input={})
    wait_for(lambda: run.status().steps["deep_dive"].child_run is not None, timeout_s=60)
    child = Run(str(run.status().steps["deep_dive"].child_run), registry_for(settings))
    assert run.cancel()
    wait_for(lambda: child.status().state == "cancelled", timeout_s=30)
    assert run.status().state == "cancelled"


def test_a_failed_child_puts_the_step_in_needs_attention_and_a_retry_starts_a_fresh_child(
    settings: Settings, tmp_path: Path
) -> None:
    fix = tmp_path / "fixed"
    register_workflow(
        Workflow(name="fragile_child", steps=[Step(name="work", agent="broken_until_fixed", params={"path": str(fix)})])
    )
    registry = registry_for(settings)
    run = start(parent("fragile_child"), input={})
    wait_for(lambda: run.status().steps["deep_dive"].child_run is not None, timeout_s=60)
    first = Run(str(run.status().steps["deep_dive"].child_run), registry)
    wait_for(lambda: first.status().state == "needs_attention", timeout_s=60)
    # The child waits for an operator; the parent's step says which child it runs.
    assert run.status().state == "running" and run.status().steps["deep_dive"].state == "running"
    first.abort("given up")
    wait_for(lambda: run.status().state == "needs_attention", timeout_s=60)
    error = run.status().steps["deep_dive"].error or ""
    assert f"child run {first.id} (fragile_child) ended failed" in error
    fix.write_text("fixed")
    run.retry_step("deep_dive")
    run.wait(timeout=60)
    second = run.status().steps["deep_dive"].child_run
    assert second and second != first.id
    assert Run(second, registry).status().state == "succeeded"


def test_bad_child_specs_are_refused_before_anything_runs() -> None:
    with pytest.raises(UnknownWorkflowError):
        start(parent("no_such_workflow"), input={})
    loop_a = Workflow(name="loop_a", steps=[Step(name="go", workflow="loop_b")])
    register_workflow(Workflow(name="loop_b", steps=[Step(name="back", workflow="loop_a")]))
    register_workflow(loop_a)
    with pytest.raises(WorkflowSpecError, match="child workflows form a cycle: loop_a -> loop_b -> loop_a"):
        start(loop_a, input={})
    with pytest.raises(WorkflowSpecError, match="input_from"):
        Step(name="x", workflow="audit_child", input_from="review")
