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
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
            except ProcessLookupError:
                return
        self.kills.append((time.time(), kind))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout_s=20)


def ledger(registry: Registry, run_ids: list[str]) -> dict[str, Any]:
    """Everything the event log says about the runs."""
    completed = lost = duplicate_completions = duplicate_fan_in = discarded = reexecutions = 0
    recovery: list[float] = []
    states: dict[str, int] = {}
    for run_id in run_ids:
        state = registry.run_record(run_id).get("state", "missing")
        states[state] = states.get(state, 0) + 1
        if state == "succeeded":
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between SIGKILLs")
    parser.add_argument("--in-flight", type=int, default=40, help="runs submitted but not finished, at most")
    parser.add_argument("--agent-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="processes per agent worker")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="wait this long for stragglers")
    parser.add_argument("--run-timeout", type=float, default=120.0, help="a run open this long frees its slot")
    parser.add_argument("--unsafe", action="store_true", help="negative control: early acks, no watchdog")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with RedisServer(appendonly=True) as server:
        settings = Settings(
            redis_url=server.url,
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
        )
        configure(settings)
        import bench.chaos_agents  # noqa: F401  (the role, for validation in this process)

        workflow = DIAMOND.model_copy(
            update={
                "steps": [
                    s.model_copy(update={"retry": RetryPolicy(max_attempts=6, backoff_s=0.2)}) for s in DIAMOND.steps
                ]
            }
        )
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
                run = _start_with_retry(workflow, len(run_ids))
                run_ids.append(run.id)
                open_runs[run.id] = time.time()
            if not restarted and len(run_ids) >= args.runs // 2:
                server.restart()  # SIGTERM: the AOF is flushed; then the same port and data
                restarted.append(time.time())
            time.sleep(0.05)
        stop_killing.set()
        elapsed = time.time() - began
        result = ledger(registry, run_ids)
        cluster.stop()
        beat.terminate()
        beat.wait()

    result |= {
        "submitted": len(run_ids),
        "elapsed_s": round(elapsed, 1),
        "kills": len(cluster.kills),
        "kills_of_whole_workers": sum(1 for _, kind in cluster.kills if kind == "worker"),
        "redis_restarts": len(restarted),
        "mode": "unsafe (early acks, no watchdog)" if args.unsafe else "safe (late acks, leases, watchdog)",
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
    out = Path(args.out or f"bench/results/chaos{'-unsafe' if args.unsafe else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


def _start_with_retry(workflow: Workflow, index: int) -> Any:
    # Starting may meet the Redis restart; a client retries, with the same idempotency key.
    for _ in range(100):
        try:
            return start(workflow, input={"n": index}, idempotency_key=f"chaos-{index}")
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"could not start run {index}")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip finalisers that would talk to the Redis server this script stopped
