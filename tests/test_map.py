"""Map over a run-time list, on real workers: one member per element, results joined in order,
exactly once; an empty list, a failing member under each policy, and lists that are not lists."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator import Run, Step, Workflow, start
from proj.errors import InvalidMapError
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import wait_for

pytestmark = pytest.mark.usefixtures("worker", "client")


def mapped(on_member_failure: str = "escalate", path: str = "plan.files", **params: Any) -> Workflow:
    return Workflow(
        name="map_files",
        steps=[
            Step(name="plan", agent="lister"),
            Step(
                name="review_file",
                agent="per_item",
                after=["plan"],
                map=path,
                on_member_failure=on_member_failure,  # type: ignore[arg-type]
                params=params,
            ),
            Step(name="summary", agent="collector", after=["review_file", "plan"]),
        ],
    )


def test_one_member_per_item_and_the_results_in_order(settings: Settings) -> None:
    files = [f"f{i}.py" for i in range(12)]
    run = start(mapped(sleep_s=0.01), input={"files": files})
    results = run.wait(timeout=60)
    expected = [{"item": name, "index": i} for i, name in enumerate(files)]
    assert results["review_file"] == expected
    assert results["summary"]["got"]["review_file"] == expected  # the step after sees the list
    status = run.status()
    assert status.steps["review_file"].members == 12 and status.steps["review_file"].members_done == 12
    records = registry_for(settings).step_records(run.id)
    assert all(int(records[f"review_file[{i}]"]["body_runs"]) == 1 for i in range(12))
    # The members' own copies are dropped once joined: the list is stored once.
    assert not [k for k in registry_for(settings).raw_results(run.id) if k.startswith("review_file[")]


def test_an_empty_list_completes_the_map_at_once() -> None:
    run = start(mapped(), input={"files": []})
    assert run.wait(timeout=60)["review_file"] == []
    assert run.status().steps["review_file"].members == 0


def test_a_failing_member_escalates_and_a_skip_completes_the_join(settings: Settings) -> None:
    run = start(mapped(), input={"files": ["a", "bad", "c"]})
    wait_for(lambda: run.status().state == "needs_attention", timeout_s=60)
    failed = run.status().steps["review_file"]
    assert failed.members == 3
    records = registry_for(settings).step_records(run.id)
    assert records["review_file[1]"]["state"] == "failed"
    assert "cannot review item 1" in records["review_file[1]"]["error"]
    run.skip_step("review_file[1]", {"item": "bad", "skipped": True})
    results = run.wait(timeout=60)
    assert [r.get("item") for r in results["review_file"]] == ["a", "bad", "c"]
    assert results["review_file"][1] == {"item": "bad", "skipped": True}


def test_continue_marks_the_failure_in_its_place_and_fail_ends_the_run() -> None:
    going = start(mapped("continue"), input={"files": ["a", "bad"]})
    listed = going.wait(timeout=60)["review_file"]
    assert listed[0] == {"item": "a", "index": 0}
    assert listed[1]["failed"] is True and "cannot review item 1" in listed[1]["error"]

    stopped = start(mapped("fail"), input={"files": ["bad", "b"]})
    wait_for(lambda: stopped.status().state == "failed", timeout_s=60)
    assert "cannot review item 0" in (stopped.status().error or "")
    assert "summary" not in stopped.results()


@pytest.mark.parametrize(
    ("files", "path", "message"),
    [
        ("not a list", "plan.files", "'plan.files' is a str, not a list"),
        (["a"], "plan.nothing", "'plan' has no key 'nothing'"),
        ([str(i) for i in range(1001)], "plan.files", "1001 items, more than AGENTCHORD_MAP_MAX_ITEMS (1000)"),
    ],
)
def test_a_list_that_is_not_there_waits_for_an_operator_naming_it(
    files: Any, path: str, message: str, settings: Settings
) -> None:
    registry = registry_for(settings)
    run = start(mapped(path=path), input={"files": files})
    wait_for(lambda: Run(run.id, registry).status().state == "needs_attention", timeout_s=60)
    step = Run(run.id, registry).status().steps["review_file"]
    assert step.state == "failed" and message in (step.error or ""), step.error
    Run(run.id, registry).abort("test over")


def test_a_map_path_must_start_at_a_dependency() -> None:
    with pytest.raises(InvalidMapError, match="must start with a step in its `after`"):
        Workflow(
            name="bad_map",
            steps=[
                Step(name="plan", agent="lister"),
                Step(name="each", agent="per_item", after=["plan"], map="other.files"),
            ],
        )
