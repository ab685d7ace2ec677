"""Versioned runs: a run keeps the plan it started with. Runs parked at an approval under v1 of
a workflow file are resumed after v2 is deployed (new steps, removed steps, a role gone): each
finishes under v1's plan, a step whose role no longer exists waits for an operator with a reason
naming it (never a silent hang), and new runs use v2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

import agents
from coordinator import Run, get_run, start
from coordinator.interfaces.stack import ApiProcess
from proj.settings import Settings
from tests.conftest import wait_for
from tests.test_approvals import bearer

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n x = 1\n+y = 2\n"
GATE = {"approval": {"prompt": "Ship it?"}}
V1 = {
    "name": "release",
    "version": "1",
    "steps": [
        {"name": "review", "agent": "reviewer"},
        {"name": "approve", **GATE, "after": ["review"]},
        {"name": "merge", "agent": "merger", "after": ["approve"]},
        {"name": "archive", "agent": "archiver", "after": ["approve"]},
    ],
}
# v2 renames a step, adds one and drops the archiver role (its module is no longer deployed).
V2 = {
    "name": "release",
    "version": "2",
    "steps": [
        {"name": "review", "agent": "reviewer"},
        {"name": "approve", **GATE, "after": ["review"]},
        {"name": "tests", "agent": "test_writer", "after": ["approve"]},
        {"name": "publish", "agent": "doc_generator", "after": ["tests"]},
    ],
}


@pytest.fixture
def api_v2(settings: Settings) -> Iterator[ApiProcess]:
    """The API as deployed with v2: the same settings, without the module of the retired role."""
    assert "tests.retired_agents" not in settings.agent_modules
    process = ApiProcess(settings).start().wait_ready()
    yield process
    process.stop()


def approve_over_http(api: ApiProcess, run: Run) -> None:
    answer = httpx.post(f"{api.url}/approvals/{run.id}.approve", json={"decision": "approve"}, headers=bearer())
    assert answer.status_code == 200, answer.text


@pytest.mark.usefixtures("worker", "client")
def test_parked_runs_finish_under_the_plan_they_started_with(
    tmp_path: Path, settings: Settings, api_v2: ApiProcess
) -> None:
    agents.load_agent_modules(["tests.retired_agents"])  # deployed with v1 (in this process only)
    spec = tmp_path / "release.yaml"
    spec.write_text(yaml.safe_dump(V1))
    old = [start(str(spec), input={"diff": DIFF, "i": i}) for i in range(2)]
    for run in old:
        run.wait_for_approval(timeout=60)
    spec.write_text(yaml.safe_dump(V2))  # the deploy
    new = start(str(spec), input={"diff": DIFF})
    new.wait_for_approval(timeout=60)
    assert {r.status().workflow_version for r in old} == {"1"} and new.status().workflow_version == "2"

    for run in [*old, new]:
        approve_over_http(api_v2, run)  # dispatched by the v2 deployment's API
    new.wait(timeout=60)
    assert set(new.status().steps) == {"review", "approve", "tests", "publish"}
    assert all(step.state == "succeeded" for step in new.status().steps.values())

    for run in old:
        # v1's merge ran; v1's archive waits for an operator: its role is gone.
        wait_for(lambda run=run: run.status().state == "needs_attention", timeout_s=60)
        status = run.status()
        assert set(status.steps) == {"review", "approve", "merge", "archive"}
        wait_for(lambda run=run: run.status().steps["merge"].state == "succeeded", timeout_s=60)
        archive = run.status().steps["archive"]
        assert archive.state == "failed" and "'archiver' no longer exists" in (archive.error or "")
        assert archive.body_runs == 0
        failures = [e for e in run.events() if e.type == "step_failed"]
        assert [e.fields["step"] for e in failures] == ["archive"]
        # The operator settles it; the run ends under v1's plan.
        get_run(run.id).skip_step("archive", {"archived": "by hand"})
        run.wait(timeout=60)
        assert run.status().state == "succeeded"
        assert run.results()["archive"] == {"archived": "by hand"}
