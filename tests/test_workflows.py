"""End to end on a real Redis and real `celery -A proj worker` processes."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis

import agents
from coordinator import Approval, Step, Workflow, builtin_workflow, get_run, list_runs, start
from coordinator.engine.compile import agent_signature
from coordinator.engine.dispatch import dispatch_ready
from coordinator.interfaces.demo import SAMPLE_DIFF
from coordinator.interfaces.stack import ApiProcess, WorkerProcess
from proj.celery import app
from proj.errors import (
    IdempotencyConflictError,
    RunFailedError,
    RunNeedsAttentionError,
    RunNotFoundError,
    WorkflowSpecError,
)
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import wait_for
from tests.test_approvals import bearer

pytestmark = pytest.mark.usefixtures("worker")


def echo_diamond(sleep_s: float = 0.0) -> Workflow:
    params = {"sleep_s": sleep_s}
    return Workflow(
        name="echo_diamond",
        steps=[
            Step(name="review", agent="echo"),
            Step(name="tests", agent="echo", after=["review"], params=params),
            Step(name="docs", agent="echo", after=["review"], params=params),
            Step(name="merge", agent="echo", after=["tests", "docs"]),
        ],
    )


def test_code_review_diamond_runs_to_success_with_real_outputs(client: redis.Redis) -> None:
    run = start(builtin_workflow("code_review"), input={"diff": SAMPLE_DIFF})
    results = run.wait(timeout=60)
    assert run.status().state == "succeeded"
    assert set(results) == {"review", "tests", "docs", "merge"}
    rules = {finding["rule"] for finding in results["review"]["findings"]}
    assert {"hardcoded-secret", "bare-except", "star-import", "none-compare", "debug-print", "todo"} <= rules
    assert {t["target"] for t in results["tests"]["tests"]} >= {"apply_discount", "parse_amount"}
    assert results["docs"]["documented"] == ["apply_discount"]
    assert results["merge"]["decision"] == "request_changes"
    assert all(step.body_runs == 1 for step in run.status().steps.values())


def test_each_agent_sees_only_its_dependencies_outputs(client: redis.Redis) -> None:
    results = start(echo_diamond(), input={"diff": "x", "pr": 1}).wait(timeout=60)
    assert results["review"]["saw"] == []
    assert results["tests"]["saw"] == ["review"]
    assert results["docs"]["saw"] == ["review"]
    assert results["merge"]["saw"] == ["docs", "tests"]  # not "review"
    assert results["merge"]["input_keys"] == ["diff", "pr"]


def test_middle_steps_run_in_parallel_on_two_worker_slots(client: redis.Redis) -> None:
    run = start(echo_diamond(sleep_s=0.5), input={})
    run.wait(timeout=60)
    records = registry_for(app_settings()).step_records(run.id)
    tests, docs = records["tests"], records["docs"]
    overlap = min(float(tests["finished_at"]), float(docs["finished_at"])) - max(
        float(tests["started_at"]), float(docs["started_at"])
    )
    assert overlap > 0, "tests and docs did not run at the same time"
    assert float(records["merge"]["started_at"]) >= max(float(tests["finished_at"]), float(docs["finished_at"]))


def app_settings() -> Settings:
    from proj.celery import current_settings

    return current_settings()


def test_an_idempotency_key_reused_with_other_input_is_a_conflict(client: redis.Redis) -> None:
    key = f"pr-{uuid.uuid4().hex[:6]}"
    first = start(echo_diamond(), input={"n": 1}, idempotency_key=key)
    with pytest.raises(IdempotencyConflictError, match=f"{key}.*{first.id}"):
        start(echo_diamond(), input={"n": 2}, idempotency_key=key)
    assert start(echo_diamond(), input={"n": 2}, idempotency_key=key, allow_different_input=True).id == first.id
    assert start(echo_diamond(), input={"n": 1}, idempotency_key=key).id == first.id
    first.wait(timeout=60)


def test_same_idempotency_key_gives_one_run_and_no_work_twice(client: redis.Redis) -> None:
    first = start(echo_diamond(), input={"n": 1}, idempotency_key="pr-42")
    second = start(echo_diamond(), input={"n": 1}, idempotency_key="pr-42")
    assert first.id == second.id
    first.wait(timeout=60)
    third = start(echo_diamond(), input={"n": 1}, idempotency_key="pr-42")
    assert third.id == first.id
    assert [step.body_runs for step in third.status().steps.values()] == [1, 1, 1, 1]
    assert [row["id"] for row in list_runs(50)].count(first.id) == 1


def test_duplicate_delivery_of_a_finished_step_does_not_run_the_body_again(client: redis.Redis) -> None:
    run = start(Workflow(name="one", steps=[Step(name="only", agent="echo")]), input={})
    run.wait(timeout=60)
    plan = run.plan()
    duplicate = agent_signature(app, run.id, "only", plan).clone(task_id="dup-1", ignore_result=False).apply_async()
    assert duplicate.get(timeout=30)["status"] == "done"
    assert run.status().steps["only"].body_runs == 1


def test_two_copies_delivered_at_once_run_the_body_once(client: redis.Redis) -> None:
    wf = Workflow(name="slow", steps=[Step(name="only", agent="echo", params={"sleep_s": 1.0})])
    run = start(wf, input={})
    wait_for(lambda: run.status().steps["only"].state == "running")
    # The same message again while the first copy holds the step's lease (its own task id
    # only so this test can read the copy's outcome apart from the original's).
    copy = agent_signature(app, run.id, "only", run.plan()).clone(task_id="copy-1", ignore_result=False).apply_async()
    run.wait(timeout=60)
    assert copy.get(timeout=30)["status"] == "done"
    assert run.status().steps["only"].body_runs == 1


def test_cancel_stops_dispatching_further_steps(client: redis.Redis) -> None:
    wf = Workflow(
        name="cancel_me",
        steps=[
            Step(name="first", agent="echo", params={"sleep_s": 1.0}),
            Step(name="second", agent="echo", after=["first"]),
        ],
    )
    run = start(wf, input={})
    wait_for(lambda: run.status().steps["first"].state == "running")
    assert run.cancel() is True
    assert run.cancel() is False  # already ended
    with pytest.raises(RunFailedError, match="ended cancelled"):
        run.wait(timeout=5)
    # The running step still stores its result (nothing is lost) ...
    wait_for(lambda: "first" in run.results())
    # ... but nothing after it is dispatched, by any callback or any delivery.
    registry = registry_for(app_settings())
    assert dispatch_ready(registry, run.id) == []
    late = agent_signature(app, run.id, "second", run.plan()).clone(ignore_result=False).apply_async()
    assert late.get(timeout=30)["status"] == "inactive"
    status = run.status()
    assert status.state == "cancelled"
    assert status.steps["second"].state == "pending" and status.steps["second"].body_runs == 0
    assert [e.type for e in run.events()][-1] != "step_dispatched"


def test_permanent_failure_is_not_retried_and_escalates_to_an_operator(client: redis.Redis) -> None:
    wf = Workflow(
        name="fails",
        steps=[Step(name="explode", agent="boom"), Step(name="after", agent="echo", after=["explode"])],
    )
    run = start(wf, input={})
    with pytest.raises(RunNeedsAttentionError, match="step 'explode' failed: ValueError: boom in explode"):
        run.wait(timeout=60)
    status = run.status()
    assert status.state == "needs_attention"
    assert status.steps["explode"].state == "failed" and status.steps["explode"].body_runs == 1
    assert status.steps["after"].state == "pending"
    escalated = client.xrange(registry_for(app_settings()).keys.escalations)
    mine = [fields for _id, fields in escalated if fields["run_id"] == run.id]
    assert len(mine) == 1 and mine[0]["step"] == "explode" and "ValueError" in mine[0]["traceback"]
    assert run.abort("not fixable") is True
    with pytest.raises(RunFailedError, match="ended failed: aborted by python: not fixable"):
        run.wait(timeout=5)


def test_user_role_from_agent_modules_setting_runs(client: redis.Redis) -> None:
    wf = Workflow(name="summary", steps=[Step(name="sum", agent="summarizer")])
    results = start(wf, input={"text": "one two three four"}).wait(timeout=60)
    assert results["sum"] == {"summary": "one two three four", "tokens": 4}


def test_workers_register_every_agent_task(client: redis.Redis, worker: WorkerProcess) -> None:
    registered = app.control.inspect(destination=[worker.hostname], timeout=5).registered()
    tasks = set(registered[worker.hostname])
    expected = {
        f"agents.{r}"
        for r in ("reviewer", "test_writer", "doc_generator", "merger", "router", "validator", "summarizer")
    }
    assert expected | {"coordinator.advance"} <= tasks


def test_finished_run_expires_and_running_run_does_not(client: redis.Redis) -> None:
    wf = Workflow(
        name="ttl",
        steps=[Step(name="a", agent="echo", params={"sleep_s": 0.5}), Step(name="b", agent="echo", after=["a"])],
    )
    run = start(wf, input={})
    keys = registry_for(app_settings()).run_keys(run.id)
    assert client.ttl(keys.run) == -1 and client.ttl(keys.results) in (-1, -2)
    run.wait(timeout=60)
    ttl = app_settings().finished_run_ttl_s
    existing = [key for key in keys.durable if client.exists(key)]
    # A clean run writes no event stream: its log is its records (see Registry.events).
    assert set(existing) == {keys.run, keys.results, keys.steps, keys.dispatched}
    for key in existing:
        assert ttl - 60 < client.ttl(key) <= ttl, key
    # The plan is stored once per workflow version and outlives the runs that use it.
    plan_key = registry_for(app_settings()).keys.plan(client.hget(keys.run, "plan"))
    assert app_settings().plan_ttl_s - 60 < client.ttl(plan_key) <= app_settings().plan_ttl_s


def test_get_run_from_another_handle_and_unknown_run(client: redis.Redis) -> None:
    run = start(echo_diamond(), input={})
    run.wait(timeout=60)
    assert get_run(run.id).status().state == "succeeded"
    with pytest.raises(RunNotFoundError, match="no run 'missing-run'"):
        get_run("missing-run")


def test_event_log_records_the_run_in_order(client: redis.Redis) -> None:
    run = start(Workflow(name="one", steps=[Step(name="only", agent="echo")]), input={})
    run.wait(timeout=60)
    types = [(e.type, e.fields.get("step")) for e in run.events()]
    assert types == [
        ("run_started", None),
        ("step_dispatched", "only"),
        ("step_finished", "only"),
        ("run_finished", None),
    ]


def test_the_sweep_drops_expired_runs_from_the_index_and_keeps_live_ones(client: redis.Redis) -> None:
    registry = registry_for(app_settings())
    index = registry.keys.runs_index
    old = registry.server_time() - app_settings().finished_run_ttl_s - 60
    # Two runs started long ago: one whose keys have expired, one still open (its record exists).
    client.zadd(index, {"expiredrun000001": old, "stillopenrun0001": old})
    client.hset(registry.run_keys("stillopenrun0001").run, mapping={"id": "stillopenrun0001", "state": "running"})
    fresh = start(Workflow(name="fresh", steps=[Step(name="only", agent="echo")]), input={})
    fresh.wait(timeout=60)
    assert registry.prune_runs_index() == 1
    remaining = set(client.zrange(index, 0, -1))
    assert "expiredrun000001" not in remaining
    assert {"stillopenrun0001", fresh.id} <= remaining
    client.delete(registry.run_keys("stillopenrun0001").run)


def test_a_step_that_uses_named_fields_sees_only_those(client: redis.Redis) -> None:
    wf = Workflow(
        name="field_context",
        steps=[
            Step(name="review", agent="reviewer"),
            Step(name="docs", agent="doc_generator", after=["review"]),
            # Only the review's summary; the docs step's output whole.
            Step(name="look", agent="inspector", after=["review", "docs"], uses={"review": ["summary"]}),
        ],
    )
    results = start(wf, input={"diff": "+ x = eval(y)\n"}).wait(timeout=60)
    assert set(results["review"]) == {"summary", "findings", "approve"}
    assert results["look"] == {"review": ["summary"], "docs": sorted(results["docs"])}


@pytest.mark.parametrize(
    ("uses", "message"),
    [
        ({"review": ["summary", "verdict"]}, r"'verdict' of 'review', whose output has the fields summary, fin"),
        ({"nope": ["summary"]}, r"`uses` 'nope', which is not in its `after`"),
        ({"review": []}, r"`uses` no field of 'review'"),
        ({"gate": ["note"]}, r"but an approval gate declares no output model"),
        ({"plain": ["saw"]}, r"but role 'echo' declares no output model"),
    ],
)
def test_uses_naming_what_a_dependency_lacks_is_refused_before_anything_runs(
    uses: dict[str, list[str]], message: str, client: redis.Redis
) -> None:
    steps = [
        Step(name="review", agent="reviewer"),
        Step(name="plain", agent="echo"),
        Step(name="gate", approval=Approval(prompt="ok?"), after=["review"]),
        Step(name="look", agent="inspector", after=["review", "plain", "gate"], uses=uses),
    ]
    before = sorted(client.scan_iter("agentchord-test:*"))
    with pytest.raises(WorkflowSpecError, match=message):
        start(Workflow(name="bad_uses", steps=steps), input={})
    assert sorted(client.scan_iter("agentchord-test:*")) == before  # nothing stored, nothing sent


def test_uses_is_checked_when_the_workflow_is_defined_and_over_http(api: ApiProcess, client: redis.Redis) -> None:
    steps = [Step(name="review", agent="reviewer"), Step(name="look", agent="inspector", after=["review"])]
    bad = steps[1].model_copy(update={"uses": {"review": ["verdict"]}})
    with pytest.raises(WorkflowSpecError, match="whose output has the fields summary, findings, approve"):
        Workflow(name="defined_badly", steps=[steps[0], bad])  # the roles are registered: checked now
    spec = {"name": "sent_badly", "steps": [{"name": "review", "agent": "reviewer"},
            {"name": "look", "agent": "inspector", "after": ["review"], "uses": {"review": ["verdict"]}}]}  # fmt: skip
    answer = httpx.post(f"{api.url}/workflows", json={"spec": spec}, headers=bearer(), timeout=10)
    assert answer.status_code == 422 and "verdict" in answer.json()["detail"]


def test_a_worker_without_queues_serves_every_role_and_x_leaves_one_out(
    settings: Settings, client: redis.Redis
) -> None:
    from proj.celery import app as celery_app
    from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
    from tests.conftest import TEST_AGENT_MODULE, start_worker

    everything = start_worker([], "everything", settings, concurrency=1)
    narrowed = start_worker([], "all_but_reviewer", settings, concurrency=1, extra_args=["-X", "reviewer"])
    try:
        served = celery_app.control.inspect(destination=[everything.hostname, narrowed.hostname], timeout=5)
        queues = {host: {q["name"] for q in found} for host, found in (served.active_queues() or {}).items()}
        # The roles the workers import (built-ins and the tests' module), not ones a test registered
        # in this process only.
        modules = {name: role.function.__module__ for name in agents.known_roles() if (role := agents.get_role(name))}
        roles = {
            name for name, module in modules.items() if module.startswith("agents.") or module == TEST_AGENT_MODULE
        }
        assert queues[everything.hostname] == roles | {COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE}
        assert queues[narrowed.hostname] == queues[everything.hostname] - {"reviewer"}
    finally:
        everything.stop()
        narrowed.stop()
