"""The step state table (proj/step_states.py) against the scripts that carry it out, on real Redis:
every transition from every state, and concurrent transitions on one step."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from coordinator import Approval, Step, Workflow
from coordinator.engine.compile import plan_digest, step_plans
from proj.registry import Registry, registry_for
from proj.settings import Settings
from proj.step_states import TRANSITIONS, StepState, allowed, lua_table

FLOW = Workflow(
    name="states",
    steps=[Step(name="a", agent="echo"), Step(name="g", approval=Approval(), after=["a"])],
)


def new_run(registry: Registry) -> tuple[str, Any]:
    plans = step_plans(FLOW)
    digest = plan_digest(plans, FLOW.to_json())
    registry.store_plan(digest, plans, FLOW.to_json())
    run_id = uuid.uuid4().hex[:20]
    registry.create_run(run_id, FLOW.name, "", "{}", digest, None)
    return run_id, registry.plan_by_digest(digest)


def force_state(registry: Registry, run_id: str, step: str, state: StepState) -> None:
    keys = registry.run_keys(run_id)
    if state is StepState.PENDING:
        registry.client.hdel(keys.steps, f"{step}.state")
    else:
        registry.client.hset(keys.steps, f"{step}.state", state.value)
    if state is StepState.SUCCEEDED:
        registry.client.hset(keys.results, step, "{}")  # written together, always


def state_of(registry: Registry, run_id: str, step: str) -> str:
    return registry.client.hget(registry.run_keys(run_id).steps, f"{step}.state") or "pending"


# Each operation as the engine calls it, with what it needs besides the step's state (a lease,
# the operator's attention set, a parked approval, a candidate); True if it acted.
def _begin(r: Registry, run_id: str, plan: Any) -> bool:
    return r.begin_step(run_id, "a", f"t{uuid.uuid4().hex}", "w", plan["a"]).status == "run"


def _finish(r: Registry, run_id: str, plan: Any) -> bool:
    return r.finish_step(run_id, "a", "{}", {}, plan).stored


def _retry_later(r: Registry, run_id: str, plan: Any) -> bool:
    return r.retry_later(run_id, "a", "*", "TransientError: busy", 1, 0.1)


def _escalate(r: Registry, run_id: str, plan: Any) -> bool:
    return r.escalate(run_id, "a", "*", "boom", "", 1, "echo")


def _operator_retry(r: Registry, run_id: str, plan: Any) -> bool:
    r.client.sadd(r.run_keys(run_id).attention, "a")
    return r.operator_retry(run_id, "a", "ops")


def _operator_skip(r: Registry, run_id: str, plan: Any) -> bool:
    r.client.sadd(r.run_keys(run_id).attention, "a")
    return r.operator_skip(run_id, "a", "ops", '{"by": "hand"}')


def _park(r: Registry, run_id: str, plan: Any) -> bool:
    return r.park(run_id, "a", f"{run_id}.a", "{}", None)


def _decide(decision: str) -> Callable[[Registry, str, Any], bool]:
    def decide(r: Registry, run_id: str, plan: Any) -> bool:
        # A pending approval checkpoint, whatever the step's own state is.
        r.client.hset(r.run_keys(run_id).approval("a"), mapping={"id": f"{run_id}.a", "state": "pending"})
        reply = r.decide(run_id, "a", f"{run_id}.a", decision, comment="", data_json="null", actor="t",
                         output_json="{}", reject_ends_run=True)  # fmt: skip
        return reply[0] == "ok"

    return decide


def _decide_retry(r: Registry, run_id: str, plan: Any) -> bool:
    # A budget approval (approving runs the step again) pending at step a.
    r.client.hset(r.run_keys(run_id).approval("a"), mapping={"id": f"{run_id}.a", "state": "pending"})
    reply = r.decide(run_id, "a", f"{run_id}.a", "approve", comment="", data_json="null", actor="t",
                     output_json="{}", reject_ends_run=True, retry=True)  # fmt: skip
    return reply[0] == "ok"


def _hold(r: Registry, run_id: str, plan: Any) -> bool:
    return r.hold_candidate(run_id, "a", '{"draft": 1}', {}) > 0


def _promote(r: Registry, run_id: str, plan: Any) -> bool:
    r.client.hset(r.run_keys(run_id).steps, "a.candidate", '{"draft": 1}')
    return r.promote_candidate(run_id, "a", "a~validate", '{"verdict": "PASS"}')


def _next_round(r: Registry, run_id: str, plan: Any) -> bool:
    return r.next_round(run_id, "a", "a~validate", ["too vague"]) > 0


OPERATIONS: dict[str, Callable[[Registry, str, Any], bool]] = {
    "begin": _begin,
    "finish": _finish,
    "retry_later": _retry_later,
    "escalate": _escalate,
    "operator_retry": _operator_retry,
    "operator_skip": _operator_skip,
    "park": _park,
    "decide": _decide("approve"),
    "reject": _decide("reject"),
    "decide_retry": _decide_retry,
    "hold_candidate": _hold,
    "promote": _promote,
    "next_round": _next_round,
}
# Refusals that are the normal answer to a repeat, not an illegal request: no event for them.
QUIET = {("begin", "succeeded"), ("begin", "failed"), ("finish", "succeeded"), ("escalate", "succeeded"),
         ("escalate", "failed")}  # fmt: skip


@pytest.fixture
def registry(settings: Settings, client: redis.Redis) -> Registry:
    return registry_for(settings)


def test_the_table_is_complete_and_reaches_the_scripts() -> None:
    assert set(OPERATIONS) | {"claim"} == set(TRANSITIONS)
    table = lua_table()
    for name, transition in TRANSITIONS.items():
        assert f"  {name} = {{" in table
        assert all(f"{state.value} = true" in table for state in transition.sources)
    # Every state is some transition's target, but pending (the start) and judged (set on the
    # validator step by the generator's next_round).
    targets = {t.target for t in TRANSITIONS.values()}
    assert set(StepState) - targets == {StepState.PENDING, StepState.JUDGED}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_transition_from_every_state_follows_the_table(registry: Registry, operation: str) -> None:
    transition = TRANSITIONS[operation]
    for current in StepState:
        run_id, plan = new_run(registry)
        force_state(registry, run_id, "a", current)
        acted = OPERATIONS[operation](registry, run_id, plan)
        expected = allowed(operation, current)
        assert acted == expected, f"{operation} from {current.value}: acted={acted}"
        after = state_of(registry, run_id, "a")
        assert after == (transition.target.value if expected else current.value), f"{operation} from {current}"
        refusals = [e for e in registry.events(run_id) if e.type == "illegal_transition"]
        if not expected and (operation, current.value) not in QUIET:
            assert [(e.fields["transition"], e.fields["from"]) for e in refusals] == [
                (operation if operation != "reject" else "decide", current.value)
            ]
        if expected:
            assert refusals == []


# Transitions whose only guard is the step's state: the model of a concurrent pair is "one of the
# two orders", each applying the table.
RACING = ["finish", "retry_later", "escalate", "hold_candidate", "promote", "next_round"]


def _apply(operation: str, state: str) -> str:
    return TRANSITIONS[operation].target.value if allowed(operation, state) else state


@hypothesis_settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.sampled_from([s for s in StepState if s is not StepState.PENDING]),
    first=st.sampled_from(RACING),
    second=st.sampled_from(RACING),
)
def test_two_transitions_racing_on_one_step_end_as_one_of_their_orders(
    registry: Registry, start: StepState, first: str, second: str
) -> None:
    run_id, plan = new_run(registry)
    force_state(registry, run_id, "a", start)
    registry.client.hset(registry.run_keys(run_id).steps, "a.candidate", '{"draft": 1}')
    barrier = threading.Barrier(2)

    def race(operation: str) -> None:
        barrier.wait()
        OPERATIONS[operation](registry, run_id, plan)

    threads = [threading.Thread(target=race, args=(op,)) for op in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    orders = {_apply(second, _apply(first, start.value)), _apply(first, _apply(second, start.value))}
    assert state_of(registry, run_id, "a") in orders


def test_the_rules_a_reader_relies_on() -> None:
    sources = {name: {s.value for s in t.sources} for name, t in TRANSITIONS.items()}
    # Final states: nothing leaves a stored result or a rejected gate.
    assert not any({"succeeded", "rejected"} & states for states in sources.values())
    assert "running" in sources["finish"] and "running" in sources["begin"]
    assert sources["operator_retry"] == sources["operator_skip"] == {"failed"}
    assert sources["decide"] == sources["reject"] == {"waiting_approval"}
    assert not {"failed", "waiting_approval", "validating"} & sources["begin"]
    assert sources["promote"] == sources["next_round"] == {"validating"}
