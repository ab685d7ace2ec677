"""Each registry script on its own, against a real Redis: its keys, arguments, result, and what
it does when the same call comes again (every transition must be safe to replay)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from coordinator import Approval, Step, Workflow
from coordinator.engine.compile import plan_digest, step_plans
from proj.registry import Registry, registry_for
from proj.settings import Settings

DIAMOND = Workflow(
    name="lua_diamond",
    steps=[
        Step(name="a", agent="echo"),
        Step(name="b", agent="echo", after=["a"]),
        Step(name="c", agent="echo", after=["a"]),
        Step(name="d", agent="echo", after=["b", "c"]),
    ],
)


@pytest.fixture
def registry(settings: Settings, client: redis.Redis) -> Registry:
    return registry_for(settings)


def new_run(registry: Registry, workflow: Workflow = DIAMOND, idem: str | None = None) -> tuple[str, Any, list[str]]:
    plans = step_plans(workflow)
    digest = plan_digest(plans, workflow.to_json())
    registry.store_plan(digest, plans, workflow.to_json())
    plan = registry.plan_by_digest(digest)
    first = tuple(s for s, p in plan.items() if p.inline and not p.after)
    created, run_id, claimed = registry.create_run(
        uuid.uuid4().hex[:20], workflow.name, "", "{}", digest, idem, "", first
    )
    assert created
    return run_id, plan, claimed


def run_step(registry: Registry, run_id: str, plan: Any, step: str) -> Any:
    outcome = registry.begin_step(run_id, step, f"tok-{step}", "w1", plan[step])
    assert outcome.status == "run", outcome
    return registry.finish_step(run_id, step, '{"ok": 1}', {"body_s": "0.001"}, plan)


def test_start_claims_the_first_steps_once_and_an_idempotency_key_returns_the_first_run(
    registry: Registry, client: redis.Redis
) -> None:
    run_id, _, claimed = new_run(registry, idem=f"k-{uuid.uuid4().hex}")
    assert claimed == ["a"]
    record = registry.run_record(run_id)
    assert record["state"] == "running" and record["plan"]
    assert registry.step_records(run_id)["a"]["state"] == "dispatched"
    assert not client.exists(registry.run_keys(run_id).events)  # a clean start writes no stream
    # Replayed with the same key: the first run, nothing claimed again.
    plans = step_plans(DIAMOND)
    key = record["idempotency_key_ref"].rpartition(":")[2]
    again = registry.create_run("other000000000000000", DIAMOND.name, "", "{}", plan_digest(plans), key, "", ("a",))
    assert again == (False, run_id, [""])


def test_begin_step_leases_reads_dependencies_and_answers_replays(registry: Registry) -> None:
    run_id, plan, _ = new_run(registry)
    first = registry.begin_step(run_id, "a", "tok-1", "w1", plan["a"], received_at="1.5")
    assert first.status == "run" and first.work is not None and first.work.attempt == 1
    assert registry.step_records(run_id)["a"]["received_at"] == "1.5"
    # The same step again while the first holder's lease lives: busy, with the time left.
    busy = registry.begin_step(run_id, "a", "tok-2", "w2", plan["a"])
    assert busy.status == "busy" and busy.retry_in_ms > 0
    registry.finish_step(run_id, "a", '{"x": 1}', {}, plan)
    assert registry.begin_step(run_id, "a", "tok-3", "w3", plan["a"]).status == "done"
    b = registry.begin_step(run_id, "b", "tok-b", "w1", plan["b"])
    assert b.work is not None and b.work.dependencies == {"a": {"x": 1}}


def test_begin_step_stops_a_step_whose_attempts_ran_out(registry: Registry) -> None:
    run_id, plan, _ = new_run(registry)
    limited = plan["a"].model_copy(update={"retry": plan["a"].retry.model_copy(update={"max_attempts": 1})})
    assert registry.begin_step(run_id, "a", "tok-1", "w1", limited).status == "run"
    registry.release_claim(run_id, "a")  # the holder died
    exhausted = registry.begin_step(run_id, "a", "tok-2", "w2", limited)
    assert exhausted.status == "exhausted" and exhausted.attempts == 1
    assert "worker process running it was lost" in exhausted.last_error


def test_finish_step_stores_once_claims_the_join_once_and_ends_the_run(registry: Registry) -> None:
    run_id, plan, _ = new_run(registry)
    after_a = run_step(registry, run_id, plan, "a")
    assert [name for name, _ in after_a.claimed] == ["b", "c"] and not after_a.run_finished
    replay = registry.finish_step(run_id, "a", '{"again": 1}', {}, plan)
    assert not replay.stored and replay.claimed == ()
    assert registry.results(run_id)["a"] == {"ok": 1}
    assert [e.type for e in registry.events(run_id)].count("step_result_discarded") == 1
    assert run_step(registry, run_id, plan, "b").claimed == ()  # c has no result yet
    after_c = run_step(registry, run_id, plan, "c")
    assert [name for name, _ in after_c.claimed] == ["d"]
    assert registry.claim_dispatch(run_id, ["d"]) == []  # claimed already, by the script
    assert run_step(registry, run_id, plan, "d").run_finished
    assert registry.run_record(run_id)["state"] == "succeeded"
    types = [e.type for e in registry.events(run_id)]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert types.count("step_dispatched") == 4 and types.count("step_finished") == 4


def test_finish_step_claims_nothing_once_the_run_is_cancelled(registry: Registry) -> None:
    run_id, plan, _ = new_run(registry)
    registry.begin_step(run_id, "a", "tok", "w1", plan["a"])
    assert registry.finish_run(run_id, "cancelled")
    assert not registry.finish_run(run_id, "cancelled")  # replayed: already ended
    finished = registry.finish_step(run_id, "a", "{}", {}, plan)
    assert finished.stored and finished.claimed == ()  # the result is kept, nothing more is sent
    assert registry.run_record(run_id)["state"] == "cancelled"


def test_escalate_and_operator_retry_and_skip_each_act_once(registry: Registry) -> None:
    run_id, plan, _ = new_run(registry)
    registry.begin_step(run_id, "a", "tok", "w1", plan["a"])
    assert registry.escalate(run_id, "a", "tok", "boom", "trace", 1, "echo")
    assert not registry.escalate(run_id, "a", "*", "boom", "trace", 1, "echo")
    assert registry.run_record(run_id)["state"] == "needs_attention"
    assert registry.begin_step(run_id, "a", "tok2", "w1", plan["a"]).status == "failed"
    assert registry.operator_retry(run_id, "a", "ops") and not registry.operator_retry(run_id, "a", "ops")
    assert registry.run_record(run_id)["state"] == "running"
    registry.begin_step(run_id, "a", "tok3", "w1", plan["a"])
    registry.escalate(run_id, "a", "tok3", "boom again", "", 1, "echo")
    assert registry.operator_skip(run_id, "a", "ops", '{"manual": true}')
    assert not registry.operator_skip(run_id, "a", "ops", '{"manual": false}')
    assert registry.results(run_id)["a"] == {"manual": True}


def test_retry_later_frees_the_lease_for_the_next_attempt(registry: Registry) -> None:
    run_id, plan, _ = new_run(registry)
    registry.begin_step(run_id, "a", "tok", "w1", plan["a"])
    registry.retry_later(run_id, "a", "tok", "TransientError: busy", 1, 0.1)
    assert registry.step_records(run_id)["a"]["state"] == "retrying"
    second = registry.begin_step(run_id, "a", "tok2", "w2", plan["a"])
    assert second.status == "run" and second.work is not None and second.work.attempt == 2


def test_extend_lease_only_for_its_holder(registry: Registry) -> None:
    run_id, plan, _ = new_run(registry)
    registry.begin_step(run_id, "a", "holder", "w1", plan["a"])
    assert registry.extend_lease(run_id, "a", "holder")
    assert not registry.extend_lease(run_id, "a", "someone-else")


def test_park_and_decide_each_act_once(registry: Registry) -> None:
    gated = Workflow(name="lua_gate", steps=[Step(name="g", approval=Approval())])
    run_id, _, claimed = new_run(registry, gated)
    assert claimed == []  # not inline: the coordinator dispatches it
    assert registry.claim_dispatch(run_id, ["g"]) == ["g"]
    approval = f"{run_id}.g"
    assert registry.park(run_id, "g", approval, "{}", None)
    assert not registry.park(run_id, "g", approval, "{}", None)
    assert registry.run_record(run_id)["state"] == "waiting_approval"
    decide = {"comment": "", "data_json": "null", "actor": "t", "output_json": "{}", "reject_ends_run": True}
    assert registry.decide(run_id, "g", approval, "approve", **decide) == ["ok", "approve"]
    assert registry.decide(run_id, "g", approval, "reject", **decide) == ["decided", "approved", "approve"]
    assert registry.step_records(run_id)["g"]["state"] == "succeeded"


def test_emit_keeps_progress_capped_apart_from_the_log_and_expiring_with_the_run(
    registry: Registry, client: redis.Redis
) -> None:
    run_id, _, _ = new_run(registry)
    keys = registry.run_keys(run_id)
    events_before = [e.type for e in registry.events(run_id)]
    for n in range(3 * registry.settings.progress_maxlen):
        assert registry.emit(run_id, "a", "tokens", f"chunk {n} ")
    kept = registry.progress(run_id)
    # Capped (approximately: Redis trims whole nodes), newest kept, and not in the event log.
    assert registry.settings.progress_maxlen <= len(kept) < 2 * registry.settings.progress_maxlen
    assert kept[-1].fields == {"step": "a", "text": f"chunk {3 * registry.settings.progress_maxlen - 1} "}
    assert [e.type for e in registry.events(run_id)] == events_before
    assert client.ttl(keys.progress) == -1  # running: lives as long as the run
    assert registry.finish_run(run_id, "succeeded")
    assert 0 < client.ttl(keys.progress) <= client.ttl(keys.run)  # ended: expires with it
    client.delete(*keys.durable)
    assert not registry.emit(run_id, "a", "progress", "late")  # a run that is gone keeps nothing
