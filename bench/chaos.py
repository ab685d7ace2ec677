"""Fault injection at scale: diamonds under random SIGKILLs and a Redis restart, with a ledger.

N code-review-shaped diamonds (agents sleep a random 0-200 ms) run on real workers while a
random worker process (a pool child or a whole worker) is SIGKILLed every K seconds; killed
workers are restarted, as a supervisor would. Redis (AOF on) is restarted once mid-run. The
ledger is the registry's event log: every agent-body start and every stored result. It prints
submitted / completed / lost runs, duplicate stored completions, duplicate fan-in dispatches,
body re-executions and the longest recovery of a step hit by a fault.

    python bench/chaos.py                      # 1,000 runs, a kill every 2 s
    python bench/chaos.py --unsafe --runs 300  # negative control: early acks, no watchdog
    python bench/chaos.py --tenants --runs 300 # a mix of tenants, admission limits and budgets
    python bench/chaos.py --broker rabbitmq    # task messages through RabbitMQ (quorum queues)

The negative control acks messages before running them and turns the watchdog off: a kill then
loses the step, and the checker must report lost runs.

``--tenants`` submits the runs for three tenants (one submits most), under admission limits small
enough that most runs start ``queued``, and gives a share of them budgets: big ones (the run
succeeds) and a few model calls (the run ends ``budget_exceeded``); every step makes one model
call. The checker then also asserts: every run ends in the state its budget implies (none is left
``queued`` or ``running``), no limit was ever passed (the peak overlap of the runs' admitted
spans per tenant and per workflow, and the live counters, sampled), the counters are back to 0
and the admission queues are empty, and no run made more model calls than its budget allows.
It exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BROKERS, broker_url
from coordinator import Step, Workflow, start
from coordinator.interfaces.stack import WorkerProcess, settings_env
from proj.budget import Budget
from proj.celery import configure
from proj.policy import RetryPolicy
from proj.queues import COORDINATOR_QUEUE
from proj.redis_server import RedisServer
from proj.registry import TERMINAL_STATES, Registry, registry_for
from proj.settings import Settings

DIAMOND = Workflow(
    name="chaos_diamond",
    steps=[
        Step(name="review", agent="chaos"),
        Step(name="tests", agent="chaos", after=["review"]),
        Step(name="docs", agent="chaos", after=["review"]),
        Step(name="merge", agent="chaos", after=["tests", "docs"]),
    ],
)


# --tenants: who submits the runs (share of them), and the admission limits the starts use.
TENANT_SHARES = (("acme", 0.7), ("beta", 0.2), ("gamma", 0.1))
MAX_RUNNING_PER_TENANT = 3
TENANT_LIMITS = {"acme": 5}
MAX_RUNNING_PER_WORKFLOW = 8
BIG_BUDGET_CALLS = 100  # a diamond wants 4 model calls (more when a kill re-runs a step)
SMALL_BUDGET_CALLS = (1, 2, 3)  # fewer than 4: the run must end budget_exceeded


@dataclass(frozen=True)
class Submission:
    """One run of the --tenants mix: its tenant, its budget (max model calls) and how it must end."""

    tenant: str
    kind: str  # "none" | "big" | "small"
    max_calls: int | None

    @property
    def budget(self) -> Budget | None:
        return None if self.max_calls is None else Budget(max_model_calls=self.max_calls)

    @property
    def expected(self) -> str:
        return "budget_exceeded" if self.kind == "small" else "succeeded"


def tenant_mix(runs: int, rng: random.Random) -> list[Submission]:
    """The --tenants runs: 70/20/10 across three tenants; 20% big budgets, 20% small, 60% none."""
    mix = []
    for _ in range(runs):
        tenant = rng.choices([t for t, _ in TENANT_SHARES], weights=[w for _, w in TENANT_SHARES])[0]
        draw = rng.random()
        if draw < 0.2:
            mix.append(Submission(tenant, "big", BIG_BUDGET_CALLS))
        elif draw < 0.4:
            mix.append(Submission(tenant, "small", rng.choice(SMALL_BUDGET_CALLS)))
        else:
            mix.append(Submission(tenant, "none", None))
    return mix


class Cluster:
    """Agent workers and a coordinator worker that a supervisor restarts when killed."""

    def __init__(self, settings: Settings, agent_workers: int, concurrency: int) -> None:
        self.settings = settings
        self.specs = [(["chaos"], f"agent{i}", concurrency) for i in range(agent_workers)]
        self.specs.append(([COORDINATOR_QUEUE], "coord", 2))
        self.workers = [WorkerProcess(q, n, settings, concurrency=c).start() for q, n, c in self.specs]
        for worker in self.workers:
            worker.wait_ready(timeout_s=120)
        self.kills: list[tuple[float, str]] = []

    def kill_random(self, rng: random.Random) -> None:
        targets = [(w, pid, "child") for w in self.workers for pid in w.child_pids()]
        targets += [(w, w.pid, "worker") for w in self.workers if w.pid]
        worker, pid, kind = rng.choice(targets)
        if kind == "worker":
            worker.kill()  # the whole worker, children included
            index = self.workers.index(worker)
            queues, name, concurrency = self.specs[index]
            self.workers[index] = WorkerProcess(queues, name, self.settings, concurrency=concurrency).start()
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
        self.kills.append((time.time(), kind))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout_s=20)


def ledger(registry: Registry, run_ids: list[str], expected: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the event log says about the runs. A run is completed when it ended in the
    state expected of it (``expected``; else ``succeeded``), lost otherwise."""
    completed = lost = duplicate_completions = duplicate_fan_in = discarded = reexecutions = 0
    recovery: list[float] = []
    states: dict[str, int] = {}
    for run_id in run_ids:
        state = registry.run_record(run_id).get("state", "missing")
        states[state] = states.get(state, 0) + 1
        if state == (expected or {}).get(run_id, "succeeded"):
            completed += 1
        else:
            lost += 1
        finished: dict[str, int] = {}
        dispatched: dict[str, int] = {}
        redriven: set[str] = set()
        for event in registry.events(run_id):
            step = event.fields.get("step", "")
            if event.type == "step_finished":
                finished[step] = finished.get(step, 0) + 1
            elif event.type == "step_dispatched":
                dispatched[step] = dispatched.get(step, 0) + 1
            elif event.type == "step_result_discarded":
                discarded += 1
            elif event.type == "step_redriven":
                redriven.add(step)
        duplicate_completions += sum(n - 1 for n in finished.values() if n > 1)
        duplicate_fan_in += max(dispatched.get("merge", 0) - 1, 0)
        for step, record in registry.step_records(run_id).items():
            runs = int(record.get("body_runs", 0))
            reexecutions += max(runs - 1, 0)
            hit = runs > 1 or step in redriven
            if hit and record.get("finished_at") and record.get("dispatched_at"):
                # From the (last) dispatch to the stored result: the time the fault cost this step.
                recovery.append(float(record["finished_at"]) - float(record["dispatched_at"]))
    return {
        "completed": completed,
        "lost": lost,
        "states": states,
        "duplicate_step_completions": duplicate_completions,
        "duplicate_fan_in_dispatches": duplicate_fan_in,
        "discarded_duplicate_results": discarded,
        "body_reexecutions": reexecutions,
        "max_recovery_s": max(recovery, default=0.0),
    }


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """Most spans open at once; an end and a start at the same instant do not overlap (the run
    that ends frees its slot and admits the next in one script, at one server time)."""
    edges = sorted([(begin, 1) for begin, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _at, change in edges:
        running += change
        peak = max(peak, running)
    return peak


class CounterWatch:
    """Samples the live admission counters while the runs go: highest and lowest value seen."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.high: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.samples = 0

    def sample(self) -> None:
        keys = self.registry.keys
        try:
            pipe = self.registry.client.pipeline(transaction=False)
            pipe.hgetall(keys.admission_tenants)
            pipe.hgetall(keys.admission_workflows)
            tenants, workflows = pipe.execute()
        except Exception:
            return  # Redis is restarting
        self.samples += 1
        for prefix, counts in (("tenant", tenants), ("workflow", workflows)):
            for name, value in counts.items():
                key, n = f"{prefix} {name}", int(value)
                self.high[key] = max(self.high.get(key, n), n)
                self.low[key] = min(self.low.get(key, n), n)


def admission_ledger(
    registry: Registry, run_ids: list[str], mix: list[Submission], watch: CounterWatch, workflow: str
) -> dict[str, Any]:
    """What the run records and the admission keys say about tenants, limits and budgets; the
    failed checks under ``violations``."""
    client, keys = registry.client, registry.keys
    violations: list[str] = []
    limits = {f"tenant {t}": TENANT_LIMITS.get(t, MAX_RUNNING_PER_TENANT) for t, _ in TENANT_SHARES}
    limits[f"workflow {workflow}"] = MAX_RUNNING_PER_WORKFLOW
    spans: dict[str, list[tuple[float, float]]] = {key: [] for key in limits}
    per_key: dict[str, dict[str, Any]] = {
        key: {"limit": limit, "runs": 0, "queued_at_start": 0, "admitted_from_queue": 0, "max_wait_s": 0.0}
        for key, limit in limits.items()
    }
    budgets: dict[str, dict[str, Any]] = {}
    stuck: list[str] = []
    unexpected: list[str] = []
    admitted_twice: list[str] = []
    # From a queued run's admission to its first step's dispatch: long when whoever admitted it
    # died before dispatching it and the watchdog's sweep did (dispatch_admitted, or a re-drive).
    dispatch_delays: list[float] = []
    for run_id, sub in zip(run_ids, mix, strict=False):
        record = registry.run_record(run_id)
        state = record.get("state", "missing")
        if sum(1 for event in registry.events(run_id) if event.type == "admitted") > 1:
            admitted_twice.append(run_id)
        first = registry.step_records(run_id).get("review", {}).get("dispatched_at")
        if record.get("admitted_at") and first:
            dispatch_delays.append(float(first) - float(record["admitted_at"]))
        if state not in TERMINAL_STATES:
            stuck.append(f"{run_id} ({sub.tenant}, {state})")
        elif state != sub.expected:
            unexpected.append(f"{run_id} ({sub.tenant}, budget {sub.max_calls}: {state}, {record.get('error', '')})")
        for key in (f"tenant {sub.tenant}", f"workflow {workflow}"):
            row = per_key[key]
            row["runs"] += 1
            if record.get("queued_at"):
                row["queued_at_start"] += 1
            if record.get("admitted_at"):
                row["admitted_from_queue"] += 1
                if record.get("queued_at"):
                    wait = float(record["admitted_at"]) - float(record["queued_at"])
                    row["max_wait_s"] = round(max(row["max_wait_s"], wait), 2)
            if record.get("admitted") in ("1", "released"):
                # From admission (or creation, when admitted at once) to the end; open: still holding.
                begin = float(record.get("admitted_at") or record["created_at"])
                end = float(record["finished_at"]) if record.get("finished_at") else float("inf")
                spans[key].append((begin, end))
        label = {"none": "none", "big": f"max_model_calls={BIG_BUDGET_CALLS}", "small": "max_model_calls=1-3"}[sub.kind]
        row = budgets.setdefault(
            label, {"runs": 0, "succeeded": 0, "budget_exceeded": 0, "other": 0, "max_calls_over_limit": 0.0}
        )
        row["runs"] += 1
        row[state if state in ("succeeded", "budget_exceeded") else "other"] += 1
        calls = int(record.get("spend_calls") or 0)
        if sub.max_calls is not None:
            row["max_calls_over_limit"] = round(max(row["max_calls_over_limit"], calls / sub.max_calls), 2)
            if calls > sub.max_calls:
                violations.append(f"run {run_id} made {calls} model calls, budget {sub.max_calls}")
    for key, row in per_key.items():
        row["peak_running"] = peak_overlap(spans[key])
        row["peak_counter_seen"] = watch.high.get(key, 0)
        row["lowest_counter_seen"] = watch.low.get(key, 0)
        if row["peak_running"] > row["limit"]:
            violations.append(f"{key}: {row['peak_running']} runs overlapped, limit {row['limit']}")
        if row["peak_counter_seen"] > row["limit"] or row["lowest_counter_seen"] < 0:
            violations.append(
                f"{key}: counter seen between {row['lowest_counter_seen']} and {row['peak_counter_seen']}, "
                f"limit {row['limit']}"
            )
    counters = {f"tenant {t}": int(n) for t, n in client.hgetall(keys.admission_tenants).items()} | {
        f"workflow {w}": int(n) for w, n in client.hgetall(keys.admission_workflows).items()
    }
    for key, row in per_key.items():
        row["counter_at_end"] = counters.get(key, 0)
    drift = {key: n for key, n in counters.items() if n}
    if drift:
        violations.append(f"admission counters not back to 0: {drift}")
    leftover = {
        key: int(client.llen(key))
        for key in [keys.admission_ring, keys.admitted, *client.scan_iter(f"{keys.admission_queue('')}*")]
        if client.llen(key)
    }
    if leftover:
        violations.append(f"admission lists not empty: {leftover}")
    if admitted_twice:
        violations.append(f"{len(admitted_twice)} runs admitted twice: {admitted_twice[:10]}")
    if stuck:
        violations.append(f"{len(stuck)} runs left queued or running (lost): {stuck[:10]}")
    if unexpected:
        violations.append(f"{len(unexpected)} runs ended in an unexpected state: {unexpected[:10]}")
    for label, row in budgets.items():
        if label != "max_model_calls=1-3" and row["succeeded"] != row["runs"]:
            violations.append(f"budget {label}: {row['succeeded']} of {row['runs']} runs succeeded")
    return {
        "limits": per_key,
        "budgets": budgets,
        "stuck_runs": len(stuck),
        "runs_admitted_twice": len(admitted_twice),
        "max_admission_to_dispatch_s": round(max(dispatch_delays, default=0.0), 2),
        "admissions_dispatched_after_1s": sum(1 for delay in dispatch_delays if delay > 1.0),
        "unexpected_end_states": len(unexpected),
        "admission_lists_at_end": leftover,
        "counter_samples": watch.samples,
        "violations": violations,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between SIGKILLs")
    parser.add_argument("--in-flight", type=int, default=40, help="runs submitted but not finished, at most")
    parser.add_argument("--agent-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="processes per agent worker")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="wait this long for stragglers")
    parser.add_argument("--run-timeout", type=float, default=120.0, help="a run open this long frees its slot")
    parser.add_argument("--unsafe", action="store_true", help="negative control: early acks, no watchdog")
    parser.add_argument(
        "--tenants", action="store_true", help="three tenants, admission limits and budgets (see above)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--broker", choices=BROKERS, default="redis", help="where task messages go (the registry stays in Redis)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    # Drawn apart from the kills, so the kill sequence is the same with and without --tenants.
    mix = tenant_mix(args.runs, random.Random(args.seed + 1)) if args.tenants else []
    limits: dict[str, Any] = {}
    if args.tenants:
        limits = {
            "max_running_per_tenant": MAX_RUNNING_PER_TENANT,
            "tenant_limits": TENANT_LIMITS,
            "max_running_per_workflow": MAX_RUNNING_PER_WORKFLOW,
        }

    with RedisServer(appendonly=True) as server, broker_url(args.broker) as broker:
        settings = Settings(
            redis_url=server.url,
            broker_url=broker,
            key_prefix="chaos",
            agent_modules=("bench.chaos_agents",),
            broker_visibility_timeout_s=30,
            step_time_limit_s=20,
            step_lease_s=3,
            retry_max_attempts=6,
            retry_backoff_s=0.2,
            watchdog_interval_s=2,
            watchdog_stall_s=0 if args.unsafe else 10,
            acks_late=not args.unsafe,
            **limits,
        )
        configure(settings)
        import bench.chaos_agents  # noqa: F401  (the role, for validation in this process)

        step_update: dict[str, Any] = {"retry": RetryPolicy(max_attempts=6, backoff_s=0.2)}
        if args.tenants:
            step_update["params"] = {"model_calls": 1}  # budgets count them
        workflow = DIAMOND.model_copy(update={"steps": [s.model_copy(update=step_update) for s in DIAMOND.steps]})
        beat_dir = tempfile.mkdtemp(prefix="chaos-beat-")
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "proj", "beat", "-s", f"{beat_dir}/schedule", "-l", "WARNING"],
            env=settings_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cluster = Cluster(settings, args.agent_workers, args.concurrency)
        registry = registry_for(settings)
        run_ids: list[str] = []
        stop_killing = threading.Event()
        restarted: list[float] = []
        watch = CounterWatch(registry)

        def killer() -> None:
            while not stop_killing.wait(args.kill_every):
                cluster.kill_random(rng)

        threading.Thread(target=killer, daemon=True).start()
        began = time.time()
        open_runs: dict[str, float] = {}
        drain_deadline: float | None = None
        while len(run_ids) < args.runs or open_runs:
            # A run open longer than --run-timeout stops holding a slot; its final state decides.
            now = time.time()
            open_runs = {
                r: t
                for r, t in open_runs.items()
                if now - t < args.run_timeout and registry.run_record(r).get("state") not in TERMINAL_STATES
            }
            if len(run_ids) >= args.runs:
                drain_deadline = drain_deadline or time.time() + args.drain_timeout
                if time.time() > drain_deadline:
                    break  # what is still open now is counted lost
            while len(open_runs) < args.in_flight and len(run_ids) < args.runs:
                sub = mix[len(run_ids)] if mix else None
                run = _start_with_retry(workflow, len(run_ids), sub)
                run_ids.append(run.id)
                open_runs[run.id] = time.time()
            if not restarted and len(run_ids) >= args.runs // 2:
                server.restart()  # SIGTERM: the AOF is flushed; then the same port and data
                restarted.append(time.time())
            if args.tenants:
                watch.sample()
            time.sleep(0.05)
        stop_killing.set()
        elapsed = time.time() - began
        expected = {run_id: sub.expected for run_id, sub in zip(run_ids, mix, strict=False)}
        result = ledger(registry, run_ids, expected)
        if args.tenants:
            result["tenants"] = admission_ledger(registry, run_ids, mix, watch, workflow.name)
        cluster.stop()
        beat.terminate()
        beat.wait()

    result |= {
        "submitted": len(run_ids),
        "elapsed_s": round(elapsed, 1),
        "kills": len(cluster.kills),
        "kills_of_whole_workers": sum(1 for _, kind in cluster.kills if kind == "worker"),
        "redis_restarts": len(restarted),
        "mode": ("unsafe (early acks, no watchdog)" if args.unsafe else "safe (late acks, leases, watchdog)")
        + (", tenants + admission limits + budgets" if args.tenants else "")
        + f"; broker: {args.broker}",
        "broker": args.broker,
        "command": " ".join(["python", "bench/chaos.py", *sys.argv[1:]]),
    }
    print(f"\n{result['mode']}: {result['command']}\n")
    print(
        "| submitted | completed | lost | duplicate step completions | duplicate fan-in dispatches "
        "| body re-executions | kills (whole workers) | Redis restarts | max recovery s | elapsed s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result['submitted']} | {result['completed']} | {result['lost']} | {result['duplicate_step_completions']} "
        f"| {result['duplicate_fan_in_dispatches']} | {result['body_reexecutions']} "
        f"| {result['kills']} ({result['kills_of_whole_workers']}) | {result['redis_restarts']} "
        f"| {result['max_recovery_s']:.1f} | {result['elapsed_s']} |"
    )
    print(
        f"\nfinal states: {result['states']}; duplicate results discarded by HSETNX: "
        f"{result['discarded_duplicate_results']}"
    )
    if args.tenants:
        print_tenants(result["tenants"])
    name = f"chaos{'-unsafe' if args.unsafe else ''}{'-tenants' if args.tenants else ''}"
    name += "" if args.broker == "redis" else f"-{args.broker}"
    out = Path(args.out or f"bench/results/{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 1 if args.tenants and result["tenants"]["violations"] else 0


def print_tenants(tenants: dict[str, Any]) -> None:
    """The --tenants tables: admission per limit key, budgets per kind, then the checks."""
    print(
        "\n| limit key | limit | runs | queued at start | admitted from queue | max wait s "
        "| peak running (record spans) | peak counter seen | counter at end |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, row in tenants["limits"].items():
        print(
            f"| {key} | {row['limit']} | {row['runs']} | {row['queued_at_start']} | {row['admitted_from_queue']} "
            f"| {row['max_wait_s']} | {row['peak_running']} | {row['peak_counter_seen']} | {row['counter_at_end']} |"
        )
    print("\n| budget | runs | succeeded | budget_exceeded | other | max model calls / limit |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, row in tenants["budgets"].items():
        ratio = "-" if label == "none" else row["max_calls_over_limit"]
        print(f"| {label} | {row['runs']} | {row['succeeded']} | {row['budget_exceeded']} | {row['other']} | {ratio} |")
    print(
        f"\nruns left queued or running: {tenants['stuck_runs']}; unexpected end states: "
        f"{tenants['unexpected_end_states']}; admission lists at end: {tenants['admission_lists_at_end'] or 'empty'}; "
        f"counter samples: {tenants['counter_samples']}; runs admitted twice: {tenants['runs_admitted_twice']}; "
        f"admission to first dispatch: max {tenants['max_admission_to_dispatch_s']} s, "
        f"{tenants['admissions_dispatched_after_1s']} runs after more than 1 s"
    )
    if tenants["violations"]:
        print("\nCHECKS FAILED:")
        for violation in tenants["violations"]:
            print(f"  - {violation}")
    else:
        print("\nchecks passed: nothing lost, no limit passed, counters at 0, queues empty, budgets held")


def _start_with_retry(workflow: Workflow, index: int, sub: Submission | None = None) -> Any:
    # Starting may meet the Redis restart; a client retries, with the same idempotency key.
    options: dict[str, Any] = {} if sub is None else {"tenant": sub.tenant, "budget": sub.budget}
    for _ in range(100):
        try:
            return start(workflow, input={"n": index}, idempotency_key=f"chaos-{index}", **options)
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"could not start run {index}")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip finalisers that would talk to the Redis server this script stopped
