"""Many hosts: workers on separate "hosts" (Linux network namespaces, each with its own loopback
and its own directory) that reach Redis only over a virtual link, running workflows whose steps
span the hosts; one host's link is cut mid-run, for longer than a step's lease, and comes back.
Runs finish, nothing is lost, nothing is done twice: nothing relies on state local to a host.
"""

from __future__ import annotations

import gc
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from coordinator import Run, Step, Workflow, builtin_workflow, start
from coordinator.engine.watchdog import sweep_stalled
from coordinator.interfaces.stack import control_app
from proj.celery import configure
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
from proj.redis_server import RedisServer
from proj.registry import TERMINAL_STATES, Registry, registry_for
from proj.settings import Settings
from tests.conftest import LOG_DIR, wait_for
from tests.netns import HostWorker, NetnsUnavailableError, Network, host_of

# Which queues each host serves. Every workflow below has steps on at least two hosts: review
# and the plan/join steps on h1, tests, docs and the fan-out on h2 or h3, the merge on h3.
# h2's roles are h3's too, so work can move to h3 while h2 is cut off.
HOST_ROLES = {
    "h1": ["reviewer", "accountant", COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE],
    "h2": ["test_writer", "doc_generator", "echo"],
    "h3": ["test_writer", "doc_generator", "echo", "merger"],
}

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n x = 1\n+y = eval(input())\n"


def fan(sleep_s: float) -> Workflow:
    """plan (h1) -> a, b (h2 or h3, ``sleep_s`` each) -> join (h1)."""
    return Workflow(
        name="hosts_fan",
        steps=[
            Step(name="plan", agent="accountant"),
            Step(name="a", agent="echo", after=["plan"], params={"sleep_s": sleep_s}),
            Step(name="b", agent="echo", after=["plan"], params={"sleep_s": sleep_s}),
            Step(name="join", agent="accountant", after=["a", "b"]),
        ],
    )


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    """Three hosts on a bridge; fails (never skips) where namespaces cannot be made."""
    net = Network(list(HOST_ROLES))
    try:
        net.start()
    except NetnsUnavailableError as exc:
        pytest.fail(str(exc))
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def redis_on_link(network: Network) -> Iterator[RedisServer]:
    """A private Redis listening on the bridge address (the hosts' only way to it) and on the
    root namespace's loopback."""
    server = RedisServer(
        appendonly=True, extra_args=["--bind", network.gateway, "127.0.0.1", "--protected-mode", "no"]
    ).start()
    try:
        yield server
    finally:
        gc.collect()  # Celery result objects unsubscribe on collection: while Redis is up
        server.close()


@pytest.fixture(scope="module")
def hosts_settings(settings: Settings, network: Network, redis_on_link: RedisServer) -> Iterator[Settings]:
    """The test settings on that Redis, by its bridge address, for the hosts and this process.
    Nothing on 127.0.0.1 of the root namespace (trace collector, webhook receiver, fake model
    server) is reachable from a host, so none is configured. The watchdog re-drives a run after
    1 s without progress, when the test sweeps."""
    value = settings.model_copy(
        update={
            "redis_url": f"redis://{network.gateway}:{redis_on_link.port}/0",
            "broker_url": None,  # task messages in that Redis too (not a broker on the root's loopback)
            "key_prefix": "agentchord-hosts",
            "watchdog_stall_s": 1,
            "otel_endpoint": None,
            "approval_webhook_urls": (),
            "role_backends": {},
        }
    )
    configure(value)
    try:
        yield value
    finally:
        configure(settings)


@pytest.fixture(scope="module")
def hosts(network: Network, hosts_settings: Settings) -> Iterator[dict[str, HostWorker]]:
    """One worker per host (two pool processes), started together, each in its namespace."""
    workers = {
        name: HostWorker(
            network.hosts[name], queues, hosts_settings, concurrency=2, log_path=LOG_DIR / f"host-{name}.log"
        )
        for name, queues in HOST_ROLES.items()
    }
    try:
        for worker in workers.values():
            worker.start()
        for worker in workers.values():
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers.values():
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in workers.values():
            worker.stop()


def events_of(run: Run, type_: str) -> Counter[str]:
    """How many events of ``type_`` each step of ``run`` has."""
    return Counter(e.fields.get("step", "") for e in run.events() if e.type == type_)


def sweep(registry: Registry) -> bool:
    """What beat does every ``watchdog_interval_s``: re-drive the runs stalled for
    ``watchdog_stall_s`` (they re-send dispatched steps that have no result and no live lease)."""
    sweep_stalled(registry)
    return True


def finished(runs: list[Run], registry: Registry) -> bool:
    """True when every run has ended; re-drives the stalled ones meanwhile."""
    return sweep(registry) and all(run.status().state in TERMINAL_STATES for run in runs)


def succeeded_runs(registry: Registry) -> float:
    """The registry's count of runs that ended ``succeeded`` (finish_run adds one per run, once)."""
    return float(registry.client.hget(registry.keys.metrics, "runs_total|succeeded") or 0)


def idle(worker: HostWorker) -> bool:
    """The worker answers the root namespace and runs no task."""
    try:
        active = control_app(worker.settings).control.inspect(destination=[worker.hostname], timeout=1).active()
    except OSError:
        return False
    return bool(active) and active.get(worker.hostname) == []


def test_hosts_reach_redis_only_over_their_link(network: Network, redis_on_link: RedisServer) -> None:
    """Each host has its own loopback: the root namespace's 127.0.0.1 is not there."""
    probe = (
        "import socket, sys\n"
        "def reach(host):\n"
        "    try:\n"
        f"        socket.create_connection((host, {redis_on_link.port}), timeout=2).close(); return 'yes'\n"
        "    except OSError: return 'no'\n"
        f"print(reach('127.0.0.1'), reach('{network.gateway}'))\n"
    )
    for host in network.hosts.values():
        done = subprocess.run(host.command([sys.executable, "-c", probe]), capture_output=True, text=True, timeout=30)
        assert done.stdout.split() == ["no", "yes"], (host.name, done.stdout, done.stderr)


def test_runs_span_hosts_and_every_step_runs_once(hosts_settings: Settings, hosts: dict[str, HostWorker]) -> None:
    review, spread = builtin_workflow("code_review"), fan(sleep_s=0.05)
    runs = [start(review, input={"diff": DIFF, "i": i}) for i in range(20)]
    runs += [start(spread, input={"i": i}) for i in range(6)]
    for run in runs:
        run.wait(timeout=60)
    placed: Counter[str] = Counter()
    for run in runs:
        status = run.status()
        assert status.state == "succeeded"
        on = {name: host_of(step.worker) for name, step in status.steps.items()}
        assert len(set(on.values())) >= 2, on  # the run's steps span hosts
        for name, step in status.steps.items():
            assert step.agent in HOST_ROLES[on[name]]  # each ran on a host serving its role
            assert step.body_runs == 1, (run.id, name, step)
        assert not events_of(run, "step_result_discarded") and not events_of(run, "illegal_transition")
        placed.update(on.values())
    assert set(placed) >= {"h1", "h3"}
    print(f"\n{len(runs)} runs over hosts, steps per host: {dict(sorted(placed.items()))}")


def running_on(host: str, runs: list[Run]) -> list[tuple[Run, str]]:
    """The steps of ``runs`` that ``host`` is running, as the registry records them."""
    return [
        (run, name)
        for run in runs
        for name, step in run.status().steps.items()
        if step.state == "running" and host_of(step.worker) == host
    ]


def check_once(runs: list[Run], caught: list[tuple[Run, str]]) -> tuple[list[str], int, int]:
    """Nothing lost, nothing done twice: every run succeeded with a result for every step; a
    step's body ran again only if the cut caught it, and then once more at most; only one body's
    result was stored (the others were refused, or never arrived); every step was dispatched
    once, and the steps after the caught ones ran once. Returns the re-run steps and how many
    steps the watchdog re-sent and how many late results were refused."""
    reruns: list[str] = []
    redriven = refused = 0
    for run in runs:
        status = run.status()
        assert status.state == "succeeded", status  # nothing lost
        assert set(run.results()) == set(status.steps)
        discarded = events_of(run, "step_result_discarded")
        dispatched = events_of(run, "step_dispatched")
        redriven += sum(events_of(run, "step_redriven").values())
        refused += sum(discarded.values())
        assert not events_of(run, "illegal_transition")
        for name, step in status.steps.items():
            assert discarded[name] <= step.body_runs - 1, (run.id, name, step, discarded)
            assert dispatched[name] == 1, (run.id, name, dispatched)
            if step.body_runs > 1:
                reruns.append(f"{run.id}.{name}")
                assert (run, name) in caught and step.body_runs == 2, (run.id, name, step)
        assert all(status.steps[s].body_runs == 1 for s in ("plan", "join", "review", "merge") if s in status.steps)
    return reruns, redriven, refused


class LogMark:
    """Where each host's worker log ends now, to count what the workers logged after it."""

    def __init__(self, workers: dict[str, HostWorker]) -> None:
        self.workers = workers
        self.offsets = {name: self._size(worker) for name, worker in workers.items()}

    @staticmethod
    def _size(worker: HostWorker) -> int:
        return worker.log_path.stat().st_size if worker.log_path and worker.log_path.exists() else 0

    def counts(self) -> str:
        """Per host: duplicate deliveries of finished steps dropped (``done``) and deliveries put
        back because another copy held the step's lease (``busy``), since the mark."""
        found = []
        for name, worker in self.workers.items():
            assert worker.log_path is not None
            with worker.log_path.open() as log:
                log.seek(self.offsets[name])
                text = log.read()
            done = len(re.findall(r"'status': 'done'", text))
            busy = len(re.findall(r"agents\.\w+\[[^\]]+\] retry: Retry in", text))
            found.append(f"{name} done {done} busy {busy}")
        return ", ".join(found)


def test_a_host_cut_off_mid_run_comes_back_and_nothing_is_lost_or_done_twice(
    network: Network, hosts_settings: Settings, hosts: dict[str, HostWorker]
) -> None:
    """h2 is cut off with two bodies running; they outlive their leases; the watchdog re-sends
    them and h3 runs them while h2 is down. h2 comes back; its late results do not count."""
    registry = registry_for(hosts_settings)
    ended_before, mark, h2 = succeeded_runs(registry), LogMark(hosts), network.hosts["h2"]
    runs = [start(fan(sleep_s=1.0), input={"i": i}) for i in range(4)]
    runs += [start(builtin_workflow("code_review"), input={"diff": DIFF, "i": i}) for i in range(2)]

    wait_for(lambda: len(running_on("h2", runs)) >= 2, timeout_s=30)
    h2.cut()
    cut_at = time.monotonic()
    try:
        caught = running_on("h2", runs)  # bodies that run on in h2; their results cannot reach Redis
        assert caught
        wait_for(
            lambda: sweep(registry) and all(run.status().steps[s].state == "succeeded" for run, s in caught),
            timeout_s=30,
            interval_s=0.1,
        )
    finally:
        h2.restore()
    down_s = time.monotonic() - cut_at
    assert down_s > hosts_settings.step_lease_s
    assert all(host_of(run.status().steps[s].worker) == "h3" for run, s in caught)

    assert wait_for(lambda: finished(runs, registry), timeout_s=60, interval_s=0.1)
    # h2 is back: it answers the root namespace and holds no task (what the cut caught ended).
    wait_for(lambda: idle(hosts["h2"]), timeout_s=60, interval_s=0.2)
    reruns, redriven, refused = check_once(runs, caught)
    assert len(reruns) == len(caught)
    assert succeeded_runs(registry) - ended_before == len(runs)  # each run ended once

    # Back in service: h3 holds two steps at a time, so h2 takes some of these.
    after = [start(fan(sleep_s=0.3), input={"after": i}) for i in range(4)]
    for run in after:
        run.wait(timeout=60)
    assert "h2" in {host_of(step.worker) for run in after for step in run.status().steps.values()}
    print(
        f"\nh2 cut off for {down_s:.1f}s (step lease {hosts_settings.step_lease_s}s) with {len(caught)} step(s) "
        f"running there: {len(runs)} runs succeeded; the watchdog re-sent {redriven} step(s); {len(reruns)} "
        f"body re-run(s) on h3; h2's results for them: {refused} arrived late and were refused, "
        f"{len(caught) - refused} never arrived (the write failed in the cut: the task failed, nothing "
        f"stored); deliveries: {mark.counts()}"
    )


def test_two_hosts_run_the_same_step_at_once_and_one_result_counts(
    network: Network, hosts_settings: Settings, hosts: dict[str, HostWorker]
) -> None:
    """h2 is cut off while its bodies run longer than the cut; once their leases lapsed, the
    watchdog re-sends them and h3 starts them too; h2 comes back before its bodies end. Two
    copies of a step run at once on two hosts, both results reach Redis, one is stored."""
    registry = registry_for(hosts_settings)
    ended_before, mark, h2 = succeeded_runs(registry), LogMark(hosts), network.hosts["h2"]
    run = start(fan(sleep_s=5.0), input={})
    wait_for(lambda: running_on("h2", [run]), timeout_s=30)
    h2.cut()
    cut_at = time.monotonic()
    try:
        caught = running_on("h2", [run])
        assert caught
        # Down until h3 began each caught step (its second body run).
        wait_for(
            lambda: sweep(registry) and all(run.status().steps[s].body_runs == 2 for _, s in caught),
            timeout_s=30,
            interval_s=0.1,
        )
    finally:
        h2.restore()
    down_s = time.monotonic() - cut_at
    assert down_s > hosts_settings.step_lease_s
    assert wait_for(lambda: finished([run], registry), timeout_s=60, interval_s=0.1)
    wait_for(lambda: idle(hosts["h2"]) and idle(hosts["h3"]), timeout_s=60, interval_s=0.2)
    reruns, redriven, refused = check_once([run], caught)
    assert len(reruns) == refused == len(caught)  # both bodies' results arrived: one was refused
    assert succeeded_runs(registry) - ended_before == 1
    print(
        f"\nh2 cut off for {down_s:.1f}s with {len(caught)} 5 s body(ies) running there; h3 ran them too: "
        f"{refused} late result(s) refused; the watchdog re-sent {redriven} step(s); deliveries: {mark.counts()}"
    )
