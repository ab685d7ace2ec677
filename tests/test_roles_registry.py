"""The live role registry: workers announce their queues; a step for a role nobody serves is
flagged once and said in `status`; `agentchord roles` and GET /roles list it all."""

from __future__ import annotations

import httpx
import pytest
import redis

import agents
from agents import StepContext, agent
from coordinator import Step, Workflow, start
from coordinator.engine.watchdog import flag_unserved
from coordinator.interfaces.stack import ApiProcess, WorkerProcess
from coordinator.observation.roles import RoleView, role_views
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import wait_for
from tests.test_approvals import bearer
from tests.test_cli import agentchord


def test_live_workers_announce_their_queues(worker: WorkerProcess, settings: Settings, api: ApiProcess) -> None:
    registry = registry_for(settings)

    def by_queue() -> dict[str, RoleView]:
        return {view.queue: view for view in role_views(registry, agents.known_roles())}

    # Other tests clear the registry's keys after them: the worker's next heartbeat (every 5 s)
    # announces it again.
    views = wait_for(lambda: worker.hostname in by_queue()["echo"].workers and by_queue())
    assert worker.hostname in views["coordinator"].workers
    assert views["echo"].concurrency >= 2 and views["echo"].waiting == 0
    listed = httpx.get(f"{api.url}/roles", headers=bearer(), timeout=10).json()
    assert {row["queue"]: row["workers"] for row in listed}["reviewer"] == views["reviewer"].workers
    shown = agentchord(settings, "roles")
    assert shown.returncode == 0 and "reviewer" in shown.stdout and worker.hostname.split("@")[0] in shown.stdout


@pytest.mark.usefixtures("worker")
def test_a_step_for_a_role_nobody_serves_is_flagged_once_and_status_says_so(
    settings: Settings, client: redis.Redis
) -> None:
    @agent("nobody_serves")
    def nobody_serves(ctx: StepContext) -> dict[str, str]:
        return {}

    registry = registry_for(settings)
    run = start(Workflow(name="unserved", steps=[Step(name="lonely", agent="nobody_serves")]), input={})
    try:
        wait_for(lambda: registry.queue_depths(["nobody_serves"])["nobody_serves"] == 1)
        view = next(v for v in role_views(registry, agents.known_roles()) if v.queue == "nobody_serves")
        assert view.workers == [] and view.waiting == 1 and view.oldest_waiting_s is not None
        assert flag_unserved(registry, agents.known_roles()) == [(run.id, "lonely")]
        assert flag_unserved(registry, agents.known_roles()) == []  # once
        assert [e.fields for e in run.events() if e.type == "no_worker"] == [
            {"step": "lonely", "queue": "nobody_serves"}
        ]
        status = agentchord(settings, "status", run.id)
        assert "step lonely is waiting for a worker on queue nobody_serves" in status.stdout
        assert "celery -A proj worker -Q nobody_serves" in status.stdout
    finally:
        run.cancel()
        client.delete("nobody_serves")  # the broker's list for that queue
