"""Redis failovers under load: what asynchronous replication loses, measured.

A Redis master, its replica and three Sentinels (proj.redis_server.SentinelGroup); agent workers
and a coordinator worker reach Redis (broker, results, registry) only through the Sentinels.
N code-review-shaped diamonds (agents sleep a random 0-200 ms) are submitted, paced over the
test, while the master is SIGKILLed every K seconds (``group.fail_over()``: kill, wait until the
Sentinels promote the replica, bring the old master back as a replica). This process runs the
watchdog (``sweep_stalled``, every ``watchdog_interval_s``) from a thread, as beat would.

What a failover loses is what the old master acknowledged and had not replicated; the registry
rolls back with it, so the ledger is kept outside Redis (bench/failover_tasks.py: every body
started, every ``finish_step`` outcome and every dispatch claim, in files), and this process
watches the results and run states as a client would. At the end it reports, per run: succeeded,
unfinished, record vanished (RunNotFoundError); per step: bodies run again after their result was
stored, results stored twice (impossible on one server: HSETNX), stored results lost, results
computed from a dependency result that is no longer the stored one, duplicate fan-in dispatches;
per failover: the replication lag just before the kill, the bytes the new master never got, and
how long until the Sentinels named the new master and a client could write again.

    python bench/failover.py --runs 300 --failovers 4 --every 8            # plain failovers
    python bench/failover.py --runs 300 --failovers 4 --every 8 --lag 1.5  # + a replication gap

On loopback the replica is a few bytes behind at most, so a plain failover rarely loses anything.
``--lag S`` makes the window visible: before each kill the replica is cut off from the master for
S seconds (``REPLICAOF`` a dead port: a replication link partition, while clients still reach the
master), so everything acknowledged in those S seconds is lost by the failover.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from celery.result import _set_task_join_will_block

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agents
from bench.chaos import ledger as chaos_ledger
from bench.failover_tasks import LEDGER_ENV
from coordinator import Step, Workflow, start
from coordinator.engine.watchdog import sweep_stalled
from coordinator.interfaces.stack import WorkerProcess
from proj.celery import configure
from proj.connections import redis_client
from proj.policy import RetryPolicy
from proj.queues import COORDINATOR_QUEUE
from proj.redis_server import RedisServer, SentinelGroup, free_port
from proj.registry import TERMINAL_STATES, Registry, registry_for
from proj.settings import Settings

RETRY = RetryPolicy(max_attempts=6, backoff_s=0.2)
DIAMOND = Workflow(
    name="failover_diamond",
    steps=[
        Step(name="review", agent="failover", retry=RETRY),
        Step(name="tests", agent="failover", after=["review"], retry=RETRY),
        Step(name="docs", agent="failover", after=["review"], retry=RETRY),
        Step(name="merge", agent="failover", after=["tests", "docs"], retry=RETRY),
    ],
)
FAN_IN = "merge"

Key = tuple[str, str]  # (run, step)


@dataclass
class FailoverRecord:
    """One failover: the replication state just before the kill, and how long recovery took."""

    index: int
    old_port: int
    new_port: int
    lag_s: float  # how long the replica was cut off before the kill (--lag)
    runs_in_flight: int
    master_offset: int  # the old master's replication offset just before the kill
    replica_offset: int  # the replica's, read just before the master's
    killed_at: float = 0.0
    promoted_at_offset: int | None = None  # the new master's offset when promoted
    promoted_s: float | None = None  # kill -> a Sentinel names the new master
    writable_s: float | None = None  # kill -> a write through the Sentinels succeeds
    fail_over_s: float = 0.0  # the whole group.fail_over(): kill to old master back, in sync
    error: str = ""

    @property
    def lag_bytes(self) -> int:
        return max(self.master_offset - self.replica_offset, 0)

    @property
    def unreplicated_bytes(self) -> int | None:
        """Bytes the old master had written (at its last reading) that the new master never got."""
        if self.promoted_at_offset is None:
            return None
        return max(self.master_offset - self.promoted_at_offset, 0)


class Failovers(threading.Thread):
    """Fails the master over ``count`` times, ``every`` seconds after the previous one ended."""

    def __init__(
        self,
        group: SentinelGroup,
        settings: Settings,
        count: int,
        every: float,
        lag_s: float,
        in_flight: Callable[[], int],
    ) -> None:
        super().__init__(name="failovers", daemon=True)
        self.group, self.settings, self.count, self.every, self.lag_s = group, settings, count, every, lag_s
        self.in_flight = in_flight
        self.records: list[FailoverRecord] = []
        self.last_end = time.time()
        self.busy = False
        self.finished = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            for index in range(self.count):
                if self.stopped.wait(max(self.last_end + self.every - time.time(), 0.0)):
                    return
                self.busy = True
                record = self.fail_over(index)
                self.records.append(record)
                self.last_end, self.busy = time.time(), False
                if record.error:
                    return
        finally:
            self.busy = False
            self.finished.set()

    def fail_over(self, index: int) -> FailoverRecord:
        group = self.group
        old, replica = group.master, group.replica
        if self.lag_s > 0:
            # A replication link partition: the replica follows a dead address, the master goes on
            # acknowledging writes that reach no replica.
            with _direct(replica) as client:
                client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
            time.sleep(self.lag_s)
        with _direct(replica) as client:
            replica_info = client.info("replication")
        with _direct(old) as client:
            master_info = client.info("replication")
        record = FailoverRecord(
            index=index + 1,
            old_port=old.port,
            new_port=replica.port,
            lag_s=self.lag_s,
            runs_in_flight=self.in_flight(),
            master_offset=int(master_info["master_repl_offset"]),
            replica_offset=int(replica_info.get("slave_repl_offset", replica_info["master_repl_offset"])),
        )
        watcher = threading.Thread(target=self._watch, args=(old, replica, record), daemon=True)
        watcher.start()
        began = time.time()
        try:
            group.fail_over()
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.fail_over_s = round(time.time() - began, 2)
        watcher.join(timeout=60)
        try:
            with _direct(replica) as client:
                info = client.info("replication")
            if info.get("role") == "master" and int(info.get("second_repl_offset", -1)) > 0:
                record.promoted_at_offset = int(info["second_repl_offset"]) - 1
        except redis.RedisError as exc:
            record.error = record.error or f"reading the new master: {exc}"
        return record

    def _watch(self, old: RedisServer, replica: RedisServer, record: FailoverRecord) -> None:
        """From the kill: when a Sentinel names the new master, when a client's write succeeds."""
        deadline = time.time() + 60
        while old.process is not None and time.time() < deadline:
            time.sleep(0.001)  # fail_over() SIGKILLs it first thing
        record.killed_at = killed = time.time()
        probe = redis_client(self.settings, socket_connect_timeout=0.5)
        try:
            while time.time() < deadline and (record.promoted_s is None or record.writable_s is None):
                if record.promoted_s is None and self.group.master_port() == replica.port:
                    record.promoted_s = round(time.time() - killed, 2)
                if record.writable_s is None:
                    try:
                        probe.set(f"{self.settings.key_prefix}:bench:failover-probe", str(killed))
                        record.writable_s = round(time.time() - killed, 2)
                    except redis.RedisError:
                        pass
                time.sleep(0.02)
        finally:
            probe.close()


def _direct(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_connect_timeout=1, socket_timeout=5, decode_responses=True)


class Observer:
    """What a client polling the runs sees: each step's result (its nonce) and each run's end."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.results: dict[Key, list[str]] = defaultdict(list)  # distinct nonces, in the order seen
        self.ended: dict[str, str] = {}  # run -> the first terminal state seen
        self.errors = 0

    def poll(self, run_ids: Sequence[str]) -> dict[str, str | None] | None:
        """Each run's state now (None: no record), or None when Redis could not be read."""
        if not run_ids:
            return {}
        keys = self.registry.keys
        try:
            with self.registry.client.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.hget(keys.run(run_id).run, "state")
                    pipe.hgetall(keys.run(run_id).results)
                replies = pipe.execute()
        except redis.RedisError:
            self.errors += 1
            return None
        states: dict[str, str | None] = {}
        for i, run_id in enumerate(run_ids):
            state, results = replies[2 * i], replies[2 * i + 1]
            states[run_id] = state
            if state in TERMINAL_STATES:
                self.ended.setdefault(run_id, state)
            for step, raw in results.items():
                nonce = str(json.loads(raw).get("nonce"))
                seen = self.results[(run_id, step)]
                if not seen or seen[-1] != nonce:
                    seen.append(nonce)
        return states


def idempotency_key(seed: int, index: int) -> str:
    return f"failover-{seed}-{index}"


def submit(workflow: Workflow, index: int, seed: int) -> str:
    """Start run ``index``; a start that meets the failover is retried with the same key."""
    for _ in range(600):
        try:
            return start(workflow, input={"n": index}, idempotency_key=idempotency_key(seed, index)).id
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"could not start run {index}")


def read_ledger(directory: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                lines.append(json.loads(line))
    return sorted(lines, key=lambda fact: float(fact["at"]))


def first_kill_after(at: float, kills: Sequence[float]) -> int | None:
    """The failover (1-based) of the first kill after ``at``; None if none followed."""
    for index, killed in enumerate(kills, start=1):
        if killed >= at:
            return index
    return None


def analyse(
    registry: Registry,
    run_ids: list[str],
    submitted_at: dict[str, float],
    facts: list[dict[str, Any]],
    observer: Observer,
    kills: list[float],
    seed: int,
) -> dict[str, Any]:
    """Compare the ledger (outside Redis) and the client's observations with the final registry."""
    client, keys = registry.client, registry.keys
    with client.pipeline(transaction=False) as pipe:
        for i, run_id in enumerate(run_ids):
            pipe.hget(keys.run(run_id).run, "state")
            pipe.hgetall(keys.run(run_id).results)
            pipe.get(keys.idempotency(idempotency_key(seed, i)))
        replies = pipe.execute()
    states = {run_id: replies[3 * i] for i, run_id in enumerate(run_ids)}
    keys_gone = [run_id for i, run_id in enumerate(run_ids) if replies[3 * i + 2] is None]
    final: dict[Key, dict[str, Any]] = {}
    for i, run_id in enumerate(run_ids):
        for step, raw in replies[3 * i + 1].items():
            final[(run_id, step)] = json.loads(raw)
    final_nonce = {key: str(value.get("nonce")) for key, value in final.items()}

    bodies: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    stored: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    refused = ambiguous = 0
    fan_in_claims: Counter[str] = Counter()
    for fact in facts:
        if fact["kind"] == "body":
            bodies[(fact["run"], fact["step"])].append(fact)
        elif fact["kind"] == "finish":
            if "error" in fact:
                ambiguous += 1
            elif fact["stored"]:
                stored[(fact["run"], fact["step"])].append(fact)
                fan_in_claims[fact["run"]] += FAN_IN in fact["claimed"]
            else:
                refused += 1
        elif fact["kind"] == "claim":
            fan_in_claims[fact["run"]] += FAN_IN in fact["claimed"]
    known = set(run_ids)

    records_lost = [run_id for run_id in run_ids if states[run_id] is None]
    lost_set = set(records_lost)
    succeeded = sum(1 for state in states.values() if state == "succeeded")
    unfinished = {run_id: state for run_id, state in states.items() if state is not None and state != "succeeded"}
    rolled_back_ends = [
        run_id for run_id, seen in observer.ended.items() if seen == "succeeded" and states.get(run_id) != "succeeded"
    ]

    # Stored results that are not the final one: lost by a failover (replaced, or gone).
    stored_lost: list[tuple[Key, float, str]] = []
    for key, finishes in stored.items():
        for fact in finishes:
            if final_nonce.get(key) != fact["nonce"]:
                where = "run record gone" if key[0] in lost_set else ("replaced" if key in final else "gone")
                stored_lost.append((key, float(fact["at"]), where))
    stored_twice = [key for key, finishes in stored.items() if len(finishes) > 1]
    recomputed = {
        key: sum(1 for body in bodies[key] if float(body["at"]) > min(float(f["at"]) for f in finishes))
        for key, finishes in stored.items()
    }
    recomputed = {key: n for key, n in recomputed.items() if n}
    stale_inputs = [
        (key, dep)
        for key, value in final.items()
        for dep, nonce in (value.get("saw") or {}).items()
        if final_nonce.get((key[0], dep)) != nonce
    ]
    client_saw_change = [
        key for key, seen in observer.results.items() if len(seen) > 1 or final_nonce.get(key) != seen[-1]
    ]
    body_count = sum(len(runs) for key, runs in bodies.items() if key[0] in known)
    steps_rerun = sum(1 for key, runs in bodies.items() if key[0] in known and len(runs) > 1)

    per_failover: dict[int, Counter[str]] = defaultdict(Counter)
    for run_id in records_lost:
        if (index := first_kill_after(submitted_at[run_id], kills)) is not None:
            per_failover[index]["run records lost"] += 1
    for _key, at, _where in stored_lost:
        if (index := first_kill_after(at, kills)) is not None:
            per_failover[index]["stored results lost"] += 1

    registry_view = chaos_ledger(registry, run_ids)
    return {
        "submitted": len(run_ids),
        "succeeded": succeeded,
        "run_records_lost": len(records_lost),
        "run_records_lost_ids": records_lost[:20],
        "idempotency_keys_lost": len(keys_gone),
        "idempotency_keys_lost_of_runs_with_a_record": len(set(keys_gone) - lost_set),
        "unfinished": len(unfinished),
        "unfinished_states": dict(Counter(str(s) for s in unfinished.values())),
        "runs_seen_succeeded_then_not": len(rolled_back_ends),
        "step_bodies_run": body_count,
        "steps_whose_body_ran_more_than_once": steps_rerun,
        "body_reexecutions": body_count - len({key for key in bodies if key[0] in known}),
        "steps_recomputed_after_their_result_was_stored": len(recomputed),
        "bodies_run_after_the_step_result_was_stored": sum(recomputed.values()),
        "stored_completions": sum(len(f) for f in stored.values()),
        "steps_stored_twice": len(stored_twice),
        # The sink's result ends the run: stored twice, the run succeeded, was rolled back to
        # running by a failover, and succeeded again with another result.
        "runs_that_succeeded_twice": len({run for run, step in stored_twice if step == FAN_IN and run not in lost_set}),
        "stored_results_lost": len(stored_lost),
        "stored_results_lost_by_fate": dict(Counter(where for _, _, where in stored_lost)),
        "finish_refused_duplicates": refused,
        "finish_reply_lost": ambiguous,
        "results_computed_from_a_replaced_dependency_result": len(stale_inputs),
        "stale_input_examples": [f"{run}.{step} saw {dep}" for (run, step), dep in stale_inputs[:10]],
        "duplicate_fan_in_dispatches": sum(max(n - 1, 0) for run, n in fan_in_claims.items() if run in known),
        "fan_in_bodies_run_more_than_once": sum(
            1 for (run, step), runs in bodies.items() if step == FAN_IN and run in known and len(runs) > 1
        ),
        "results_a_client_saw_change": len(client_saw_change),
        "client_poll_errors": observer.errors,
        "per_failover": {str(index): dict(counts) for index, counts in sorted(per_failover.items())},
        "registry_view": {
            "discarded_duplicate_results (step_result_discarded events)": registry_view["discarded_duplicate_results"],
            "body_reexecutions (body_runs)": registry_view["body_reexecutions"],
            "max_recovery_s": round(registry_view["max_recovery_s"], 2),
            "states": registry_view["states"],
        },
    }


def log_errors(log_dir: Path) -> dict[str, int]:
    """Exception names in the workers' logs, most frequent first."""
    counts: Counter[str] = Counter()
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "Error" in line or "Exception" in line:
                counts.update(set(re.findall(r"\b(\w+(?:Error|Exception))\b", line)))
    return dict(counts.most_common(12))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join(["---", *["---:"] * (len(headers) - 1)]) + "|")
    for row in rows:
        print("| " + " | ".join("-" if cell is None else str(cell) for cell in row) + " |")


def report(result: dict[str, Any]) -> None:
    print(f"\n{result['mode']}: {result['command']}\n")
    print_table(
        [
            "runs submitted",
            "succeeded",
            "run records lost",
            "unfinished",
            "step bodies run",
            "bodies run again after the result was stored (steps)",
            "steps stored twice",
            "stored results lost",
            "results from a replaced dependency result",
            "refused duplicates",
            "duplicate fan-in dispatches",
            "failovers",
            "elapsed s",
        ],
        [
            [
                result["submitted"],
                result["succeeded"],
                result["run_records_lost"],
                result["unfinished"],
                result["step_bodies_run"],
                f"{result['bodies_run_after_the_step_result_was_stored']} "
                f"({result['steps_recomputed_after_their_result_was_stored']})",
                result["steps_stored_twice"],
                result["stored_results_lost"],
                result["results_computed_from_a_replaced_dependency_result"],
                result["finish_refused_duplicates"],
                result["duplicate_fan_in_dispatches"],
                len(result["failovers"]),
                result["elapsed_s"],
            ]
        ],
    )
    print()
    print_table(
        [
            "failover",
            "replica cut off s",
            "runs in flight",
            "repl. lag before kill (bytes)",
            "bytes the new master never got (>=)",
            "kill -> new master named s",
            "kill -> client write ok s",
            "kill -> first stored result s",
            "fail_over() s",
            "run records lost",
            "stored results lost",
        ],
        [
            [
                fo["index"],
                fo["lag_s"],
                fo["runs_in_flight"],
                fo["lag_bytes"],
                fo["unreplicated_bytes"],
                fo["promoted_s"],
                fo["writable_s"],
                fo["first_stored_result_s"],
                fo["fail_over_s"],
                result["per_failover"].get(str(fo["index"]), {}).get("run records lost", 0),
                result["per_failover"].get(str(fo["index"]), {}).get("stored results lost", 0),
            ]
            for fo in result["failovers"]
        ],
    )
    print(
        f"\nunfinished states: {result['unfinished_states'] or 'none'}; runs a client saw succeed that did not "
        f"stay succeeded: {result['runs_seen_succeeded_then_not']}; runs that succeeded twice (rolled back in "
        f"between): {result['runs_that_succeeded_twice']}; results a client saw change: "
        f"{result['results_a_client_saw_change']}; stored results lost by fate: "
        f"{result['stored_results_lost_by_fate'] or 'none'}; finish_step calls that raised (Redis unreachable): "
        f"{result['finish_reply_lost']}; body re-executions: {result['body_reexecutions']}; fan-in bodies run "
        f"more than once: {result['fan_in_bodies_run_more_than_once']}; watchdog re-drives: "
        f"{result['watchdog_redriven_steps']} (sweep errors {result['watchdog_sweep_errors']})"
    )
    print(f"registry's own view (after the rollbacks): {result['registry_view']}")
    print(f"exceptions in worker logs: {result['worker_log_exceptions'] or 'none'}")
    if result["failover_errors"]:
        print(f"FAILOVER ERRORS: {result['failover_errors']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--failovers", type=int, default=4)
    parser.add_argument("--every", type=float, default=8.0, help="seconds from one failover's end to the next kill")
    parser.add_argument("--lag", type=float, default=0.0, help="cut the replica off this long before each kill")
    parser.add_argument("--in-flight", type=int, default=40, help="runs submitted but not finished, at most")
    parser.add_argument("--agent-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="processes per agent worker")
    parser.add_argument("--stall", type=float, default=3.0, help="watchdog_stall_s: re-drive a run idle this long")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="wait this long for stragglers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentchord-failover-"))
    ledger_dir, log_dir = work / "ledger", work / "logs"
    ledger_dir.mkdir()
    os.environ[LEDGER_ENV] = str(ledger_dir)  # the workers inherit it (settings_env copies the environment)
    _set_task_join_will_block(True)  # runs signal their end through Redis; no Celery result subscriptions
    group = SentinelGroup().start()
    workers: list[WorkerProcess] = []
    try:
        settings = Settings(
            redis_url=group.url,
            redis_sentinel_master=group.master_name,
            key_prefix="failover",
            agent_modules=("bench.failover_tasks",),
            broker_visibility_timeout_s=30,
            step_time_limit_s=20,
            step_lease_s=3,
            retry_max_attempts=6,
            retry_backoff_s=0.2,
            watchdog_interval_s=1,
            watchdog_stall_s=args.stall,
            acks_late=True,
        )
        configure(settings)
        agents.load_agent_modules(settings.agent_modules)  # the role, and the ledger's wrappers here too
        specs = [(["failover"], f"agent{i}", args.concurrency) for i in range(args.agent_workers)]
        specs.append(([COORDINATOR_QUEUE], "coord", 1))
        for queues, name, concurrency in specs:
            worker = WorkerProcess(queues, name, settings, concurrency=concurrency, log_path=log_dir / f"{name}.log")
            workers.append(worker.start())
        for worker in workers:
            worker.wait_ready(timeout_s=120)
        registry = registry_for(settings)
        result = run(args, group, settings, registry, ledger_dir)
        result["worker_log_exceptions"] = log_errors(log_dir)
        result["workers_exited"] = [w.hostname for w in workers if w.process is None or w.process.poll() is not None]
        result["work_dir"] = str(work)
        report(result)
        name = "failover-lag" if args.lag > 0 else "failover"
        out = Path(args.out or f"bench/results/{name}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {out}; ledger and worker logs under {work}")
    finally:
        for worker in workers:
            worker.stop(timeout_s=20)
        group.close()
    return 0


def submission_quota(args: argparse.Namespace, failovers: Failovers, slots: int) -> int:
    """How many runs should have been submitted by now: the runs are spread evenly over the
    slots, slot i running from the end of failover i - 1 to the end of failover i (the wait, the
    replica's cut-off, the kill and the recovery: submissions go on through all of it) and the
    last slot being ``--every`` seconds after the last failover. A failover's length is estimated
    from those so far (12 s before the first: the old master's rejoin dominates)."""
    done = len(failovers.records)
    since = time.time() - failovers.last_end
    in_slot: float
    if done < args.failovers:
        estimate = statistics.mean(fo.fail_over_s for fo in failovers.records) if done else 12.0
        in_slot = min(since / (args.every + args.lag + estimate), 0.95)
    else:
        in_slot = min(since / args.every, 1.0)
    runs = int(args.runs)
    return min(math.ceil(runs * (done + in_slot) / slots), runs)


def run(
    args: argparse.Namespace, group: SentinelGroup, settings: Settings, registry: Registry, ledger_dir: Path
) -> dict[str, Any]:
    workflow = DIAMOND
    run_ids: list[str] = []
    submitted_at: dict[str, float] = {}
    open_runs: dict[str, float] = {}
    observer = Observer(registry)
    stop = threading.Event()
    sweeps = {"redriven": 0, "errors": 0}

    def sweeper() -> None:
        # The watchdog, as beat would run it (here: in this process, every watchdog_interval_s).
        while not stop.wait(settings.watchdog_interval_s):
            try:
                sweeps["redriven"] += sum(len(steps) for steps in sweep_stalled(registry).values())
            except Exception:
                sweeps["errors"] += 1

    logging.getLogger("coordinator.engine.watchdog").setLevel(logging.ERROR)  # counted, not logged
    threading.Thread(target=sweeper, name="watchdog", daemon=True).start()
    failovers = Failovers(group, settings, args.failovers, args.every, args.lag, lambda: len(open_runs))
    began = time.time()
    failovers.last_end = began
    failovers.start()
    slots = args.failovers + 1
    drain_deadline: float | None = None
    while True:
        states = observer.poll(list(open_runs))
        for run_id, state in (states or {}).items():
            if state is None or state in TERMINAL_STATES:
                open_runs.pop(run_id, None)  # ended, or its record vanished
        quota = submission_quota(args, failovers, slots)
        while len(run_ids) < quota and len(open_runs) < args.in_flight:
            run_id = submit(workflow, len(run_ids), args.seed)
            run_ids.append(run_id)
            submitted_at[run_id] = open_runs[run_id] = time.time()
        if len(run_ids) >= args.runs and failovers.finished.is_set():
            drain_deadline = drain_deadline or time.time() + args.drain_timeout
            if not open_runs:
                # Ended as the client saw them; a failover may have rolled an end back: look again.
                again = observer.poll(run_ids) or {}
                open_runs = {r: submitted_at[r] for r, s in again.items() if s is not None and s not in TERMINAL_STATES}
            if not open_runs or time.time() > drain_deadline:
                break
        time.sleep(0.1)
    elapsed = time.time() - began
    stop.set()
    failovers.stopped.set()
    time.sleep(1.0)  # let the last ledger lines land
    facts = read_ledger(ledger_dir)
    kills = [fo.killed_at for fo in failovers.records]
    result = analyse(registry, run_ids, submitted_at, facts, observer, kills, args.seed)
    records = []
    for fo in failovers.records:
        first = min(
            (float(f["at"]) for f in facts if f["kind"] == "finish" and f.get("stored") and f["at"] > fo.killed_at),
            default=None,
        )
        records.append(
            asdict(fo)
            | {
                "lag_bytes": fo.lag_bytes,
                "unreplicated_bytes": fo.unreplicated_bytes,
                "first_stored_result_s": None if first is None else round(first - fo.killed_at, 2),
            }
        )
    mode = f"failovers with the replica cut off {args.lag} s before each kill" if args.lag > 0 else "plain failovers"
    return result | {
        "mode": mode,
        "command": " ".join(["python", "bench/failover.py", *sys.argv[1:]]),
        "elapsed_s": round(elapsed, 1),
        "failovers": records,
        "failover_errors": [fo.error for fo in failovers.records if fo.error],
        "watchdog_redriven_steps": sweeps["redriven"],
        "watchdog_sweep_errors": sweeps["errors"],
        "settings": {
            "watchdog": "sweep_stalled from a thread of the benchmark process, every watchdog_interval_s",
            "watchdog_interval_s": settings.watchdog_interval_s,
            "watchdog_stall_s": settings.watchdog_stall_s,
            "step_lease_s": settings.step_lease_s,
            "broker_visibility_timeout_s": settings.broker_visibility_timeout_s,
            "agent_workers": args.agent_workers,
            "concurrency": args.concurrency,
            "in_flight": args.in_flight,
            "sentinel_down_after_ms": group.down_after_ms,
        },
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
    }


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip finalisers that would talk to the Redis servers this script stopped
