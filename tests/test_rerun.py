"""Rerun from a step: a new run linked to the original that reuses the stored outputs of the
steps before the chosen one (no model call for them) and runs the rest, on real workers."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

import agents
from coordinator import Run, builtin_workflow, get_run, rerun, start
from coordinator.engine.rerun import downstream, reusable_outputs
from coordinator.interfaces.stack import ApiProcess
from proj.errors import InvalidStartOptionError, RerunNotAllowedError, RunNotFoundError, StepNotFoundError
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import wait_for
from tests.test_approvals import bearer
from tests.test_cli import agentchord

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n x = 1\n+y = eval(input())\n"
pytestmark = pytest.mark.usefixtures("worker", "client")


@pytest.fixture
def original() -> Run:
    run = start(builtin_workflow("code_review"), input={"diff": DIFF})
    run.wait(timeout=60)
    return run


def model_calls(run: Run, step: str, settings: Settings) -> int:
    return int(registry_for(settings).step_records(run.id).get(step, {}).get("model_calls", 0))


def test_a_rerun_reuses_the_steps_before_the_chosen_one_and_runs_the_rest(original: Run, settings: Settings) -> None:
    """code_review is review -> (tests || docs) -> merge. From `tests`: review and docs are
    reused (no body, no model call), tests and merge run; merge's join counts the reused docs."""
    again = rerun(original.id, "tests")
    results = again.wait(timeout=60)
    status = again.status()
    assert status.state == "succeeded"
    assert (status.rerun_of, status.rerun_from) == (original.id, "tests")
    reused = {name for name, step in status.steps.items() if step.reused_from == original.id}
    assert reused == {"review", "docs"}
    for name in ("review", "docs"):
        assert status.steps[name].body_runs == 0 and model_calls(again, name, settings) == 0
        assert results[name] == original.results()[name]  # the stored output, as it was
    for name in ("tests", "merge"):
        assert status.steps[name].body_runs == 1 and status.steps[name].reused_from is None
        assert model_calls(again, name, settings) >= 1
        assert status.steps[name].agent_version == "1"
    reused_events = [e.fields["step"] for e in again.events() if e.type == "step_reused"]
    assert sorted(reused_events) == ["docs", "review"]
    assert [e.fields["run"] for e in original.events() if e.type == "rerun"] == [again.id]
    assert [s.state for s in again.timings().steps if s.reused_from] == ["succeeded", "succeeded"]


def test_a_changed_input_or_param_is_never_served_a_stale_output(original: Run) -> None:
    # New input: review saw the input, so it runs again, and everything after it.
    new_input = rerun(original.id, "merge", input={"diff": DIFF + "+z = 2\n"})
    new_input.wait(timeout=60)
    assert not any(step.reused_from for step in new_input.status().steps.values())
    # A param of docs changed: docs runs again though it is not after `tests`.
    new_param = rerun(original.id, "tests", params={"docs": {"style": "terse"}})
    new_param.wait(timeout=60)
    status = new_param.status()
    assert {name for name, step in status.steps.items() if step.reused_from} == {"review"}
    assert status.steps["docs"].body_runs == 1


def test_another_role_version_or_prompt_reuses_nothing(original: Run, settings: Settings) -> None:
    """The hash covers the role's version and prompt: with either changed, nothing matches."""
    registry = registry_for(settings)
    plan, records, results = original.plan(), registry.step_records(original.id), registry.raw_results(original.id)
    inputs = {"diff": DIFF}
    same = reusable_outputs(plan, "merge", records, results, inputs, agents.get_role)
    assert set(same) == {"review", "tests", "docs"}
    assert downstream(plan, "review") == {"review", "tests", "docs", "merge"}

    def bumped(field: str) -> object:
        def role_of(name: str) -> agents.AgentRole | None:
            role = agents.get_role(name)
            return replace(role, **{field: "2" if field == "version" else "new prompt"}) if role else None

        return role_of

    assert reusable_outputs(plan, "merge", records, results, inputs, bumped("version")) == {}  # type: ignore[arg-type]
    assert reusable_outputs(plan, "merge", records, results, inputs, bumped("prompt")) == {}  # type: ignore[arg-type]
    assert reusable_outputs(plan, "merge", records, results, inputs, lambda _: None) == {}
    assert reusable_outputs(plan, "merge", records, results, {"diff": "other"}, agents.get_role) == {}


def test_bad_reruns_are_refused_and_create_nothing(original: Run, settings: Settings) -> None:
    registry = registry_for(settings)
    before = registry.client.zcard(registry.keys.runs_index)
    with pytest.raises(RunNotFoundError):
        rerun("no-such-run", "tests")
    with pytest.raises(StepNotFoundError, match="no step 'nope'"):
        rerun(original.id, "nope")
    with pytest.raises(InvalidStartOptionError, match="no step 'ghost'"):
        rerun(original.id, "tests", params={"ghost": {"x": 1}})
    with pytest.raises(InvalidStartOptionError, match="params"):
        rerun(original.id, "tests", params={"docs": "terse"})  # type: ignore[dict-item]
    parked = start(builtin_workflow("code_review_gated"), input={"diff": DIFF})
    wait_for(lambda: parked.status().state == "waiting_approval")
    with pytest.raises(RerunNotAllowedError, match="waiting_approval"):
        rerun(parked.id, "review")
    assert registry.client.zcard(registry.keys.runs_index) == before + 1  # only the parked run
    assert not [e for e in original.events() if e.type == "rerun"]
    parked.cancel()
    assert get_run(parked.id).status().state == "cancelled"


def test_the_cli_and_the_api_rerun_and_refuse_bad_reruns(original: Run, settings: Settings, api: ApiProcess) -> None:
    shown = agentchord(settings, "rerun", original.id, "--from", "merge", "--wait")
    assert shown.returncode == 0, shown.stderr
    assert "reused: docs, review, tests" in shown.stdout and "succeeded" in shown.stdout
    new_id = shown.stdout.split(":", 1)[0].strip()
    assert get_run(new_id).status().rerun_of == original.id
    report = agentchord(settings, "report", new_id)
    assert report.returncode == 0 and report.stdout.count("reused") >= 3, report.stdout
    refused = agentchord(settings, "rerun", original.id, "--from", "nope")
    assert refused.returncode != 0 and "no step 'nope'" in refused.stdout + refused.stderr

    url = f"{api.url}/workflows/{original.id}/rerun"
    started = httpx.post(url, json={"from_step": "docs", "params": {"docs": {"style": "terse"}}}, headers=bearer())
    assert started.status_code == 202, started.text
    again = get_run(started.json()["run_id"])
    again.wait(timeout=60)
    assert {n for n, s in again.status().steps.items() if s.reused_from} == {"review", "tests"}
    for body, status in (
        ({"from_step": "nope"}, 404),
        ({"from_step": "docs", "params": {"ghost": {}}}, 422),
        ({"from_step": "docs", "surprise": 1}, 422),
        ({}, 422),
    ):
        answer = httpx.post(url, json=body, headers=bearer())
        assert answer.status_code == status, (body, answer.text)
    assert (
        httpx.post(f"{api.url}/workflows/missing/rerun", json={"from_step": "docs"}, headers=bearer()).status_code
        == 404
    )
    assert httpx.post(url, json={"from_step": "docs"}).status_code == 401
