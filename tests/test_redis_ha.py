"""Redis high availability: the broker, the Celery results and the registry through Redis Sentinel,
on a real master, replica and three Sentinels; the master is killed mid-run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinator import Step, Workflow, start
from coordinator.engine.watchdog import sweep_stalled
from coordinator.interfaces.runner import Run
from coordinator.interfaces.stack import WorkerProcess
from proj.celery import configure
from proj.connections import check_connection_settings
from proj.errors import ConfigurationError
from proj.redis_server import SentinelGroup
from proj.registry import TERMINAL_STATES, registry_for
from proj.settings import Settings
from tests.conftest import start_worker, wait_for

FAN = Workflow(
    name="ha_fan",
    steps=[
        Step(name="plan", agent="accountant", params={"sleep_s": 0.05, "words": 20}),
        *[Step(name=f"part{i}", agent="accountant", after=["plan"], params={"sleep_s": 0.3}) for i in range(3)],
        Step(name="join", agent="accountant", after=[f"part{i}" for i in range(3)], params={"sleep_s": 0.05}),
    ],
)


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    # A password (given once, in the first part of the URL) and a database other than 0: every
    # part of agentchord must read both from the URL alike.
    with SentinelGroup(password="ha-master-password-3c9e", db=2) as started:
        yield started


@pytest.fixture(scope="module")
def ha(settings: Settings, group: SentinelGroup) -> Iterator[Settings]:
    """The test settings on the Sentinel group (the watchdog re-drives after 2 s without progress)."""
    ha_settings = settings.model_copy(
        update={"redis_url": group.url, "redis_sentinel_master": group.master_name, "watchdog_stall_s": 2}
    )
    configure(ha_settings)
    try:
        yield ha_settings
    finally:
        configure(settings)


@pytest.fixture(scope="module")
def ha_worker(ha: Settings) -> Iterator[WorkerProcess]:
    process = start_worker(["accountant", "coordinator"], "ha", ha, concurrency=3)
    yield process
    process.stop()


def finished(runs: list[Run], ha: Settings) -> bool:
    """True when every run has ended; re-drives the stalled ones meanwhile (as beat would)."""
    sweep_stalled(registry_for(ha))
    return all(run.status().state in TERMINAL_STATES for run in runs)


def test_runs_finish_through_a_master_failover(ha: Settings, group: SentinelGroup, ha_worker: WorkerProcess) -> None:
    old_master = group.master.port
    runs = [start(FAN, input={"i": i}) for i in range(8)]
    # Mid-run: some steps done, others queued or running.
    assert wait_for(lambda: sum(len(r.results()) for r in runs) >= 8, timeout_s=30)
    new_master = group.fail_over()
    assert new_master.port != old_master and group.master_port() == new_master.port
    assert wait_for(lambda: finished(runs, ha), timeout_s=90, interval_s=0.5)
    registry = registry_for(ha)
    states = [run.status().state for run in runs]
    assert states == ["succeeded"] * len(runs)  # nothing lost
    for run in runs:
        assert not [e for e in run.events() if e.type == "step_result_discarded"]  # no step stored twice
        assert set(run.results()) == {"plan", "part0", "part1", "part2", "join"}
    reruns = sum(max(s.body_runs - 1, 0) for run in runs for s in run.status().steps.values())
    print(f"failover: {len(runs)} runs succeeded; {reruns} step bodies ran again after the failover")
    assert registry.client.connection_pool.get_master_address()[1] == new_master.port


def test_a_second_failover_back_to_the_first_master(
    ha: Settings, group: SentinelGroup, ha_worker: WorkerProcess
) -> None:
    group.fail_over()
    run = start(FAN, input={"after": "second failover"})
    assert wait_for(lambda: finished([run], ha), timeout_s=60, interval_s=0.5)
    assert run.status().state == "succeeded"


@pytest.mark.parametrize(
    ("update", "names"),
    [
        ({"redis_url": "memcached://127.0.0.1:11211"}, "AGENTCHORD_REDIS_URL: scheme 'memcached'"),
        ({"redis_url": "sentinel://127.0.0.1:26379/0"}, "AGENTCHORD_REDIS_SENTINEL_MASTER"),
        ({"redis_url": "sentinel://:26379/0", "redis_sentinel_master": "m"}, "is not sentinel://host:port"),
        ({"redis_url": "rediss://127.0.0.1:6380/0"}, "AGENTCHORD_REDIS_CA_FILE"),
        ({"redis_url": "rediss://h:1/0", "redis_ca_file": "/nonexistent/ca.pem"}, "cannot read /nonexistent/ca.pem"),
        ({"broker_url": "kafka://127.0.0.1:9092"}, "AGENTCHORD_BROKER_URL: scheme 'kafka'"),
    ],
)
def test_a_url_that_cannot_work_fails_at_start_naming_the_setting(
    settings: Settings, update: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigurationError, match=names.replace("(", r"\(")):
        check_connection_settings(settings.model_copy(update=update))
