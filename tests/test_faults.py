"""The small fault-injection suite: real worker processes, real Redis, real crashes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from coordinator import Approval, Step, Workflow, get_run, start
from coordinator.engine.compile import agent_signature
from coordinator.engine.watchdog import redrive
from coordinator.interfaces.stack import ApiProcess, WorkerProcess
from proj.celery import app
from proj.errors import RunFailedError, RunNeedsAttentionError, StepStateError
from proj.policy import RetryPolicy
from proj.redis_server import RedisServer
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import API_TOKEN, start_worker, wait_for

pytestmark = pytest.mark.usefixtures("worker")

QUICK = RetryPolicy(max_attempts=2, backoff_s=0.1)


def step_events(run_id: str, type_: str, step: str) -> int:
    return sum(1 for e in get_run(run_id).events() if e.type == type_ and e.fields.get("step") == step)


def test_transient_failures_are_retried_with_growing_backoff_then_succeed(client: redis.Redis) -> None:
    policy = RetryPolicy(max_attempts=3, backoff_s=0.1, jitter=0)
    wf = Workflow(name="flaky", steps=[Step(name="call", agent="flaky", params={"fail_times": 2}, retry=policy)])
    run = start(wf, input={})
    assert run.wait(timeout=60)["call"] == {"attempt": 3}
    retries = [e for e in run.events() if e.type == "step_retrying"]
    assert [float(e.fields["delay_s"]) for e in retries] == [0.1, 0.2]
    assert all("TransientError: provider busy" in e.fields["error"] for e in retries)
    assert run.status().steps["call"].body_runs == 3


def test_transient_failure_that_exhausts_its_attempts_escalates(client: redis.Redis) -> None:
    wf = Workflow(name="flaky", steps=[Step(name="call", agent="flaky", params={"fail_times": 9}, retry=QUICK)])
    run = start(wf, input={})
    with pytest.raises(RunNeedsAttentionError, match="provider busy"):
        run.wait(timeout=60)
    assert run.status().steps["call"].body_runs == 2


def test_duplicated_chord_member_and_callbacks_dispatch_the_join_once(client: redis.Redis) -> None:
    wf = Workflow(
        name="fan_in",
        steps=[
            Step(name="a", agent="echo"),
            Step(name="b", agent="echo", after=["a"], params={"sleep_s": 0.5}),
            Step(name="c", agent="echo", after=["a"], params={"sleep_s": 0.5}),
            Step(name="join", agent="echo", after=["b", "c"]),
        ],
    )
    run = start(wf, input={})
    wait_for(lambda: run.status().steps["b"].state == "running")
    # The same chord member delivered again, and the coordinator callback fired three more times.
    agent_signature(app, run.id, "b", run.plan()).apply_async()
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda _: app.send_task("coordinator.advance", kwargs={"run_id": run.id}), range(3)))
    run.wait(timeout=60)
    assert step_events(run.id, "step_dispatched", "join") == 1
    assert {s: st.body_runs for s, st in run.status().steps.items()} == {"a": 1, "b": 1, "c": 1, "join": 1}


def test_kill_between_result_write_and_dispatch_loses_nothing(client: redis.Redis, worker: WorkerProcess) -> None:
    wf = Workflow(
        name="crash_after_store",
        steps=[
            Step(name="first", agent="echo", params={"crash_after_store": True}),
            Step(name="second", agent="echo", after=["first"]),
        ],
    )
    run = start(wf, input={})
    results = run.wait(timeout=60)
    assert results["second"]["saw"] == ["first"]
    steps = run.status().steps
    assert steps["first"].body_runs == 1 and steps["second"].body_runs == 1
    assert worker.process is not None and worker.process.poll() is None  # the pool replaced its child


def test_poison_step_is_capped_and_escalated_while_other_runs_proceed(client: redis.Redis) -> None:
    poisoned = start(Workflow(name="poison", steps=[Step(name="p", agent="poison", retry=QUICK)]), input={})
    healthy = start(Workflow(name="healthy", steps=[Step(name="h", agent="echo")]), input={})
    assert healthy.wait(timeout=60)["h"]["step"] == "h"
    with pytest.raises(RunNeedsAttentionError, match="gave up after 2 attempt"):
        poisoned.wait(timeout=90)
    assert "the worker process running it was lost" in (poisoned.status().steps["p"].error or "")
    assert poisoned.status().steps["p"].body_runs == 2


def test_hard_time_limit_kills_the_step_then_retries_then_escalates(client: redis.Redis) -> None:
    wf = Workflow(
        name="too_slow",
        steps=[Step(name="slow", agent="stubborn", params={"sleep_s": 30}, time_limit_s=1, retry=QUICK)],
    )
    run = start(wf, input={})
    with pytest.raises(RunNeedsAttentionError, match="hard time limit"):
        run.wait(timeout=90)
    assert run.status().steps["slow"].body_runs == 2
    assert step_events(run.id, "step_retrying", "slow") == 1


def test_operator_skip_retry_and_abort(settings: Settings, api: ApiProcess, client: redis.Redis) -> None:
    wf = Workflow(
        name="operator",
        steps=[Step(name="explode", agent="boom"), Step(name="after", agent="echo", after=["explode"])],
    )
    skipped = start(wf, input={})
    with pytest.raises(RunNeedsAttentionError):
        skipped.wait(timeout=60)
    with pytest.raises(StepStateError, match="cannot retry step 'after'"):
        skipped.retry_step("after")
    response = httpx.post(
        f"{api.url}/workflows/{skipped.id}/steps/explode/skip",
        json={"output": {"fixed": "by hand"}},
        headers={"authorization": f"Bearer {API_TOKEN}"},
    )
    assert response.status_code == 202, response.text
    results = skipped.wait(timeout=60)
    assert results["explode"] == {"fixed": "by hand"} and results["after"]["saw"] == ["explode"]

    retried = start(wf, input={})
    with pytest.raises(RunNeedsAttentionError):
        retried.wait(timeout=60)
    retried.retry_step("explode")
    with pytest.raises(RunNeedsAttentionError):  # still broken: it fails again, once
        retried.wait(timeout=60)
    assert retried.status().steps["explode"].body_runs == 1
    assert [e.type for e in retried.events()].count("operator_retry") == 1
    conflict = httpx.post(
        f"{api.url}/workflows/{retried.id}/steps/after/retry", headers={"authorization": f"Bearer {API_TOKEN}"}
    )
    assert conflict.status_code == 409
    from tests.test_cli import agentchord

    aborted = agentchord(settings, "abort", retried.id, "--reason", "gave up")
    assert aborted.returncode == 0 and "aborted" in aborted.stdout
    with pytest.raises(RunFailedError, match="aborted by python: gave up"):
        retried.wait(timeout=5)


def test_failed_step_can_escalate_to_a_human_approval(client: redis.Redis) -> None:
    wf = Workflow(
        name="ask_a_human",
        steps=[
            Step(name="explode", agent="boom", on_failure="escalate_to_approval"),
            Step(name="after", agent="echo", after=["explode"]),
        ],
    )
    run = start(wf, input={})
    approval = run.wait_for_approval(timeout=60)
    assert approval.kind == "failure" and "ValueError: boom in explode" in approval.prompt
    assert run.status().state == "waiting_approval"
    run.approve(data={"manual": "output"})
    results = run.wait(timeout=60)
    assert results["explode"] == {"manual": "output"}


def test_cancel_during_a_fan_out_dispatches_nothing_more(client: redis.Redis) -> None:
    wf = Workflow(
        name="cancel_fan_out",
        steps=[
            Step(name="a", agent="echo"),
            Step(name="b", agent="echo", after=["a"], params={"sleep_s": 1.0}),
            Step(name="c", agent="echo", after=["a"], params={"sleep_s": 1.0}),
            Step(name="join", agent="echo", after=["b", "c"]),
        ],
    )
    run = start(wf, input={})
    wait_for(lambda: run.status().steps["b"].state == "running" or run.status().steps["c"].state == "running")
    assert run.cancel()
    running = [s for s, st in run.status().steps.items() if st.state == "running"]
    # What was running finishes and keeps its result (nothing is lost) ...
    wait_for(lambda: set(running) <= set(run.results()))
    # ... but nothing new starts, and the join is never dispatched.
    status = run.status()
    assert step_events(run.id, "step_dispatched", "join") == 0
    assert status.state == "cancelled" and status.steps["join"].body_runs == 0
    assert all(status.steps[s].body_runs == 0 for s in ("b", "c") if s not in running)


def test_watchdog_redrives_a_step_whose_message_was_lost(settings: Settings, client: redis.Redis) -> None:
    registry = registry_for(settings)
    wf = Workflow(name="lost", steps=[Step(name="only", agent="echo", params={"sleep_s": 0})])
    gate = Workflow(name="parked", steps=[Step(name="g", approval=Approval())])
    parked = start(gate, input={})
    parked.wait_for_approval(timeout=30)
    # A run whose step was claimed for dispatch but whose message never reached the broker.
    from coordinator.engine.compile import plan_digest, step_plans

    run_id = "lostmessage0001"
    plans = step_plans(wf)
    registry.store_plan(plan_digest(plans), plans)
    registry.create_run(run_id, wf.name, wf.to_json(), "{}", plan_digest(plans), None)
    assert registry.claim_dispatch(run_id, ["only"]) == ["only"]
    assert redrive(registry, run_id) == ["only"]
    assert get_run(run_id).wait(timeout=30)["only"]["step"] == "only"
    assert redrive(registry, parked.id) == []  # parked runs are waiting, not stalled


def test_parked_and_new_runs_continue_after_a_redis_restart(
    settings: Settings, api: ApiProcess, redis_server: RedisServer, client: redis.Redis
) -> None:
    gate = Workflow(
        name="survive",
        steps=[Step(name="g", approval=Approval()), Step(name="after", agent="echo", after=["g"])],
    )
    parked = start(gate, input={"keep": True})
    approval = parked.wait_for_approval(timeout=30)
    redis_server.restart()
    # The API and the workers reconnect by themselves.
    response = wait_for(
        lambda: _resume_ok(api, approval.id),
        timeout_s=60,
    )
    assert response.json()["state"] == "approved"
    assert parked.wait(timeout=60)["after"]["input_keys"] == ["keep"]
    fresh = start(Workflow(name="fresh", steps=[Step(name="x", agent="echo")]), input={})
    assert fresh.wait(timeout=60)["x"]["step"] == "x"


def _resume_ok(api: ApiProcess, approval_id: str) -> httpx.Response | None:
    try:
        response = httpx.post(
            f"{api.url}/approvals/{approval_id}",
            content=json.dumps({"decision": "approve"}),
            headers={"authorization": f"Bearer {API_TOKEN}"},
            timeout=5,
        )
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def test_a_join_that_became_ready_while_the_run_waited_for_an_operator_runs_after_the_retry(
    client: redis.Redis, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    wf = Workflow(
        name="join_while_waiting",
        steps=[
            Step(name="a", agent="echo"),
            Step(
                name="broken",
                agent="broken_until_fixed",
                after=["a"],
                params={"path": str(fixed)},
                retry=RetryPolicy(max_attempts=1),
            ),
            Step(name="slow", agent="echo", after=["a"], params={"sleep_s": 1.0}),
            Step(name="fast", agent="echo", after=["a"]),
            Step(name="join", agent="echo", after=["slow", "fast"]),
            Step(name="end", agent="echo", after=["broken", "join"]),
        ],
    )
    run = start(wf, input={})
    with pytest.raises(RunNeedsAttentionError, match="broken until"):
        run.wait(timeout=60)
    # The join's dependencies finish while the run waits for the operator: nothing claims it then.
    wait_for(lambda: {"slow", "fast"} <= set(run.results()))
    fixed.touch()
    run.retry_step("broken")
    results = run.wait(timeout=60)
    assert results["join"]["saw"] == ["fast", "slow"] and results["end"]["saw"] == ["broken", "join"]
    assert {name: st.body_runs for name, st in run.status().steps.items()}["join"] == 1


def test_a_step_sent_to_a_worker_without_its_role_is_handed_to_an_operator_with_the_reason(
    settings: Settings, client: redis.Redis
) -> None:
    from agents import agent

    @agent("only_in_this_process")
    def only_here(ctx: object) -> dict[str, str]:
        return {"ok": "yes"}

    bare = start_worker(["only_in_this_process"], "bare", settings)  # its modules do not define the role
    try:
        run = start(Workflow(name="orphan", steps=[Step(name="lonely", agent="only_in_this_process")]), input={})
        with pytest.raises(RunNeedsAttentionError, match="AGENTCHORD_AGENT_MODULES"):
            run.wait(timeout=60)
        assert run.status().steps["lonely"].state == "failed"
    finally:
        bare.stop()
