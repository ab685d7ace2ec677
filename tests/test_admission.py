"""Tenants and fair admission on real workers: runs over a limit wait ``queued`` in Redis and are
admitted, in turn across tenants, by whichever process ends a run."""

from __future__ import annotations

import pytest
import redis

from coordinator import Approval, Step, Workflow, get_run, start
from coordinator.engine.watchdog import sweep_stalled
from coordinator.interfaces.runner import Run
from proj.errors import InvalidStartOptionError
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import wait_for

pytestmark = pytest.mark.usefixtures("worker")

GATED = Workflow(
    name="gated_admission",
    steps=[Step(name="gate", approval=Approval(prompt="go?")), Step(name="after", agent="echo", after=["gate"])],
)
QUICK = Workflow(name="quick_admission", steps=[Step(name="only", agent="echo")])


def limited(settings: Settings, **limits: object) -> Settings:
    return settings.model_copy(update=limits)


def state(run: Run) -> str:
    return run.status().state


def finish(run: Run) -> None:
    """Approve the run's gate and wait for it to end (its slot frees)."""
    run.wait_for_approval(timeout=30)
    run.approve()
    run.wait(timeout=30)


def admitted_in_order(runs: list[Run]) -> list[Run]:
    """Approve whichever run is parked until all have run; the order they were admitted in."""
    order: list[Run] = []
    pending = list(runs)
    while pending:
        running = wait_for(lambda: [r for r in pending if state(r) != "queued"])
        assert len(running) == 1, [state(r) for r in pending]  # the limit is one
        order.append(running[0])
        pending.remove(running[0])
        finish(running[0])
    return order


def test_queued_runs_are_admitted_in_turn_across_tenants(client: redis.Redis, settings: Settings) -> None:
    one_at_a_time = limited(settings, max_running_per_workflow=1)
    a1, a2, a3, a4 = (start(GATED, tenant="acme", settings=one_at_a_time) for _ in range(4))
    b1, b2 = (start(GATED, tenant="beta", settings=one_at_a_time) for _ in range(2))
    assert [state(r) for r in (a2, a3, a4, b1, b2)] == ["queued"] * 5
    assert a2.status().steps["gate"].state == "pending"  # nothing of a queued run is dispatched
    registry = registry_for(settings)
    assert registry.admission_counts() == ({"acme": 1}, {"gated_admission": 1}, {"acme": 3, "beta": 2})
    # acme and beta take turns, though acme's runs were all queued first.
    order = admitted_in_order([a1, a2, a3, a4, b1, b2])
    assert [r.id for r in order] == [r.id for r in (a1, a2, b1, a3, b2, a4)]
    assert "admitted" in [event.type for event in b1.events()]
    assert registry.admission_counts() == ({}, {}, {})


def test_fifo_admission_is_the_order_of_arrival(client: redis.Redis, settings: Settings) -> None:
    fifo = limited(settings, max_running_per_workflow=1, admission_order="fifo")
    a1, a2, a3 = (start(GATED, tenant="acme", settings=fifo) for _ in range(3))
    b1 = start(GATED, tenant="beta", settings=fifo)
    order = admitted_in_order([a1, a2, a3, b1])
    assert [r.id for r in order] == [r.id for r in (a1, a2, a3, b1)]


def test_a_tenant_limit_holds_one_tenant_and_not_the_others(client: redis.Redis, settings: Settings) -> None:
    per_tenant = limited(settings, max_running_per_tenant=1, tenant_limits={"big": 2})
    a1, a2 = (start(GATED, tenant="acme", settings=per_tenant) for _ in range(2))
    big = [start(GATED, tenant="big", settings=per_tenant) for _ in range(3)]
    assert [state(r) for r in (a1, a2, *big)] == ["waiting_approval", "queued", "waiting_approval", "waiting_approval",
                                                  "queued"]  # fmt: skip
    finish(a1)  # frees acme's slot: acme's next run, not big's
    assert wait_for(lambda: state(a2) == "waiting_approval")
    assert state(big[2]) == "queued"
    for run in (a2, *big):
        finish(run)


def test_a_cancelled_queued_run_leaves_its_queue(client: redis.Redis, settings: Settings) -> None:
    one = limited(settings, max_running_per_tenant=1)
    first, second = start(GATED, tenant="acme", settings=one), start(GATED, tenant="acme", settings=one)
    assert state(second) == "queued"
    assert second.cancel()
    assert state(second) == "cancelled"
    finish(first)  # nothing is admitted in the cancelled run's place ...
    assert state(second) == "cancelled"
    registry = registry_for(settings)
    assert registry.admission_counts() == ({}, {}, {})
    third = start(GATED, tenant="acme", settings=one)  # ... and the freed slot is free
    assert third.wait_for_approval(timeout=30)
    finish(third)


def test_runs_admitted_by_a_process_that_died_are_dispatched_by_the_watchdog(
    client: redis.Redis, settings: Settings
) -> None:
    one = limited(settings, max_running_per_tenant=1)
    first, second = start(GATED, tenant="acme", settings=one), start(GATED, tenant="acme", settings=one)
    first.wait_for_approval(timeout=30)
    registry = registry_for(settings)
    # Ending the run in the registry alone admits the second but dispatches nothing, as when the
    # process that ended it dies before dispatching.
    assert registry.finish_run(first.id, "cancelled") == 2
    assert state(second) == "running"
    assert second.status().steps["gate"].state == "pending"
    sweep_stalled(registry)  # the beat's watchdog
    assert second.wait_for_approval(timeout=30)
    finish(second)


def test_concurrent_runs_never_pass_the_limit(client: redis.Redis, settings: Settings) -> None:
    three = limited(settings, max_running_per_workflow=3)
    runs = [start(QUICK, input={"i": i}, tenant=("acme" if i % 3 else "beta"), settings=three) for i in range(30)]
    for run in runs:
        run.wait(timeout=60)
    # From admission (or creation, when admitted at once) to the end: never more than 3 overlap.
    spans = []
    for run in runs:
        record = registry_for(settings).run_record(run.id)
        spans.append((float(record.get("admitted_at") or record["created_at"]), float(record["finished_at"])))
    edges = sorted([(start_at, 1) for start_at, _ in spans] + [(end_at, -1) for _, end_at in spans])
    running = peak = 0
    for _at, change in edges:
        running += change
        peak = max(peak, running)
    assert peak <= 3
    assert sum(1 for run in runs if "admitted" in [e.type for e in run.events()]) > 0  # some did wait
    assert registry_for(settings).admission_counts() == ({}, {}, {})


@pytest.mark.parametrize("tenant", ["", "has space", "x" * 65, "-leading", "a/b"])
def test_a_bad_tenant_is_refused_before_anything_is_created(
    client: redis.Redis, settings: Settings, tenant: str
) -> None:
    with pytest.raises(InvalidStartOptionError, match="tenant is not valid"):
        start(QUICK, tenant=tenant)
    assert client.zcard(f"{settings.key_prefix}:runs") == 0


def test_a_limit_below_one_is_a_settings_error(settings: Settings) -> None:
    for field in ("max_running_per_tenant", "max_running_per_workflow"):
        with pytest.raises(ValueError, match=field):
            Settings(redis_url=settings.redis_url, **{field: 0})
    with pytest.raises(ValueError, match="tenant_limits"):
        Settings(redis_url=settings.redis_url, tenant_limits={"acme": 0})


def test_a_run_without_limits_is_never_queued(client: redis.Redis, settings: Settings) -> None:
    run = start(QUICK, tenant="acme")
    run.wait(timeout=30)
    assert get_run(run.id).status().state == "succeeded"
    assert registry_for(settings).admission_counts() == ({}, {}, {})
