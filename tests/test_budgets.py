"""Per-run budgets on real workers: spend counted in Redis across processes, hard limits that
no new model call passes, the soft-limit warning, and the two ways a run meets its limit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis

from agents.llm import count_tokens, step_cost
from coordinator import Step, Workflow, get_run, start
from coordinator.engine.specs import parse_workflow
from coordinator.interfaces.stack import ApiProcess, WorkerProcess
from proj.budget import Budget
from proj.errors import InvalidStartOptionError, RunFailedError, SpecFileError
from proj.settings import Settings
from tests.conftest import start_worker, wait_for
from tests.test_approvals import bearer

pytestmark = pytest.mark.usefixtures("worker")

PRICES = {"offline": (1.0, 4.0, 0.25)}  # the test settings' price table


@pytest.fixture(scope="module")
def spenders(settings: Settings) -> Iterator[WorkerProcess]:
    """Four more processes on the spender queue: with the shared worker's two, up to six model
    calls of one run are in flight at once."""
    process = start_worker(["spender"], "spenders", settings, concurrency=4)
    yield process
    process.stop()


def fan_out(name: str, width: int, **params: object) -> Workflow:
    return Workflow(name=name, steps=[Step(name=f"s{i}", agent="spender", params=dict(params)) for i in range(width)])


def event_types(run_id: str) -> list[str]:
    return [event.type for event in get_run(run_id).events()]


def settled(run_id: str):  # type: ignore[no-untyped-def]
    """The run's spend once no call is in flight (steps still running finish their calls)."""
    run = get_run(run_id)
    return wait_for(lambda: (spend := run.budget()) is not None and spend.in_flight_calls == 0 and spend)


def test_model_call_limit_holds_across_concurrent_steps(client: redis.Redis, spenders: WorkerProcess) -> None:
    # 8 steps x 3 calls = 24 calls wanted, 10 allowed; up to six steps run at once.
    run = start(fan_out("calls_capped", 8, calls=3, words=20, pause_s=0.05), budget=Budget(max_model_calls=10))
    with pytest.raises(RunFailedError) as ended:
        run.wait(timeout=60)
    assert ended.value.state == "budget_exceeded"
    assert "10 model calls made (limit 10)" in str(ended.value)
    spend = settled(run.id)
    # Exactly ten calls started, and each ran to its end: the tokens are ten calls' worth.
    answer = json.dumps({"summary": " ".join(["word"] * 20), "words": 20}, sort_keys=True)
    assert spend.model_calls == 10
    assert spend.spent_tokens == 10 * (20 + count_tokens(answer))
    assert spend.exceeded is not None and "model calls" in spend.exceeded
    types = event_types(run.id)
    assert types.count("budget_exceeded") == 1
    assert types.count("budget_warning") == 1  # at 80% of the calls


def test_cost_is_a_hard_cap_when_estimates_cover_the_calls(client: redis.Redis, spenders: WorkerProcess) -> None:
    # Each call reserves its prompt plus llm_max_tokens (1024) completion tokens, more than the
    # offline model answers: no call may start that could pass the limit, so none does. 32 calls
    # of about $0.0021 are wanted; $0.03 allows about half.
    run = start(fan_out("cost_capped", 8, calls=4, words=2000, pause_s=0.02), budget={"max_cost_usd": 0.03})
    with pytest.raises(RunFailedError, match="budget exceeded"):
        run.wait(timeout=60)
    spend = settled(run.id)
    assert 0 < spend.spent_cost_usd <= 0.03
    assert spend.spent_cost_usd > 0.03 - 6 * step_cost(PRICES, "offline", 2000, 1024, 0)  # the limit stopped it


def test_overshoot_is_bounded_by_the_calls_in_flight(client: redis.Redis, spenders: WorkerProcess) -> None:
    # The "verbose" answer (1,500 tokens) is longer than the 1,024 reserved: every call costs
    # more than its estimate, so the run can pass its limit, by at most what the calls in flight
    # when it was reached (six processes: at most six) spent beyond their estimates.
    limit = 0.05
    run = start(fan_out("overshoot", 8, calls=4, words=50, task="verbose"), budget=Budget(max_cost_usd=limit))
    with pytest.raises(RunFailedError, match="budget exceeded"):
        run.wait(timeout=60)
    spend = settled(run.id)
    actual = step_cost(PRICES, "offline", 50, 1500, 0)
    estimate = step_cost(PRICES, "offline", 50, 1024, 0)
    in_flight_max = 6
    # Every started call was settled at its real cost (less where the simulated prefix cache
    # served the repeated prompt at the cached rate).
    cheapest = step_cost(PRICES, "offline", 50, 1500, 50)
    assert spend.model_calls * cheapest - 1e-12 <= spend.spent_cost_usd <= spend.model_calls * actual + 1e-12
    assert spend.spent_cost_usd <= limit + in_flight_max * (actual - estimate) + 1e-12
    assert spend.spent_cost_usd > limit - actual  # it was the limit that stopped it
    print(f"overshoot: ${spend.spent_cost_usd - limit:.6f} over ${limit} ({spend.model_calls} calls)")


def test_budget_approval_raises_the_limit_and_the_run_finishes(client: redis.Redis) -> None:
    workflow = Workflow(
        name="raise_me",
        budget=Budget(max_model_calls=3, on_exceeded="approval"),
        steps=[
            Step(name="first", agent="spender", params={"calls": 2}),
            Step(name="second", agent="spender", after=["first"], params={"calls": 2}),
        ],
    )
    run = start(workflow)
    approval = run.wait_for_approval(timeout=30)
    assert approval.kind == "budget" and approval.step == "second"
    assert "3 model calls made (limit 3)" in approval.prompt
    assert approval.context["proposed"]["max_model_calls"] == 6
    assert run.status().state == "waiting_approval"
    run.approve(data={"max_model_calls": 10})
    results = run.wait(timeout=30)
    assert results["second"] == {"calls": 2}  # ran again from its start, under the raised budget
    spend = settled(run.id)
    assert spend.budget.max_model_calls == 10
    assert spend.model_calls == 5  # 2 + 1 refused after the third, then 2 again
    assert "budget_raised" in event_types(run.id)


def test_refusing_to_raise_the_budget_ends_the_run(client: redis.Redis) -> None:
    workflow = fan_out("refuse_raise", 1, calls=3)
    run = start(workflow, budget=Budget(max_model_calls=1, on_exceeded="approval"))
    run.wait_for_approval(timeout=30)
    run.reject(comment="too expensive")
    with pytest.raises(RunFailedError) as ended:
        run.wait(timeout=30)
    assert ended.value.state == "budget_exceeded"
    assert "refused" in str(ended.value)


def test_the_start_budget_wins_over_the_workflow_and_the_default(client: redis.Redis, settings: Settings) -> None:
    workflow = Workflow(
        name="layered", budget=Budget(max_tokens=100_000), steps=[Step(name="s", agent="spender", params={})]
    )
    defaulted = settings.model_copy(update={"default_budget": Budget(max_model_calls=7)})
    assert start(fan_out("plain", 1), settings=defaulted).budget().budget.max_model_calls == 7  # type: ignore[union-attr]
    assert start(workflow, settings=defaulted).budget().budget.max_tokens == 100_000  # type: ignore[union-attr]
    own = start(workflow, budget={"max_wall_s": 60}, settings=defaulted).budget()
    assert own is not None and own.budget.max_wall_s == 60 and own.budget.max_tokens is None
    assert start(fan_out("plain", 1)).budget() is None


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"max_cost_usd": -1}, "max_cost_usd: Input should be greater than 0"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than 0"),
        ({}, "at least one of max_cost_usd"),
        ({"max_model_calls": 5, "soft_limit": 1.5}, "soft_limit"),
        ({"max_cost_usd": 1, "on_exceeded": "shrug"}, "on_exceeded"),
        ("lots", "expected a Budget or a dict"),
    ],
)
def test_a_bad_budget_is_refused_before_anything_is_created(
    client: redis.Redis, settings: Settings, budget: object, message: str
) -> None:
    with pytest.raises(InvalidStartOptionError, match="budget is not valid") as refused:
        start(fan_out("bad", 1), budget=budget)  # type: ignore[arg-type]
    assert message in str(refused.value)
    assert client.zcard(f"{settings.key_prefix}:runs") == 0  # no run was created


def test_a_bad_workflow_budget_names_the_field() -> None:
    with pytest.raises(SpecFileError, match=r"budget\.max_model_calls: Input should be greater than 0"):
        parse_workflow({"name": "w", "budget": {"max_model_calls": 0}, "steps": [{"name": "s", "agent": "spender"}]})


def test_over_http_a_start_carries_its_budget_and_the_token_is_the_tenant(client: redis.Redis, api: ApiProcess) -> None:
    body = {"workflow": "code_review", "input": {"code": "def f(): pass"}, "budget": {"max_model_calls": 1}}
    response = httpx.post(f"{api.url}/workflows", json=body, headers=bearer(), timeout=30)
    assert response.status_code == 202, response.text
    run = get_run(response.json()["run_id"])
    with pytest.raises(RunFailedError, match="budget exceeded"):
        run.wait(timeout=30)
    view = httpx.get(f"{api.url}/workflows/{run.id}", headers=bearer(), timeout=30).json()["status"]
    assert view["state"] == "budget_exceeded"
    assert view["budget"]["budget"]["max_model_calls"] == 1 and view["budget"]["model_calls"] == 1
    assert view["tenant"] == "token"  # the test token's name


def test_over_http_a_bad_budget_is_422_and_starts_nothing(
    client: redis.Redis, api: ApiProcess, settings: Settings
) -> None:
    body = {"workflow": "code_review", "input": {}, "budget": {"max_cost_usd": 0}}
    response = httpx.post(f"{api.url}/workflows", json=body, headers=bearer(), timeout=30)
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "budget", "max_cost_usd"]
    assert client.zcard(f"{settings.key_prefix}:runs") == 0
