"""Prometheus metrics, aggregated in Redis so every worker on every machine adds to one set.

The registry's Lua scripts count runs by final state, failed steps and retries as they happen.
Everything measured per step (steps by role, queue wait, body time, tokens) and per run (wall,
overhead, tax ratio, cost) is computed when someone reads it, not on the step path: a run that
ends is queued (``metrics:unfolded``) and the next scrape folds its step records into the hash,
once (:func:`fold_ended_runs`). The API serves them on ``/metrics`` through
:class:`RegistryCollector`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from coordinator.observation.timing import compute_timings
from proj.plan import RunPlan
from proj.registry import Registry, step_records_of

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RATIO_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)

_HELP = {
    "queue_wait_seconds": "Time a step's message waited for a worker (dispatched -> started).",
    "step_body_seconds": "Time inside agent bodies.",
    "run_wall_seconds": "Wall time of succeeded runs (parked time included).",
    "run_overhead_seconds": "Coordination overhead of succeeded runs: wall - critical-path work - parked.",
    "run_tax_ratio": "Overhead / (wall - parked) of succeeded runs.",
}


def _observe(pipe: Any, key: str, name: str, value: float, bounds: tuple[float, ...]) -> None:
    bucket = next((str(b) for b in bounds if value <= b), "+Inf")
    pipe.hincrby(key, f"{name}|bucket|{bucket}", 1)
    pipe.hincrbyfloat(key, f"{name}|sum", value)
    pipe.hincrby(key, f"{name}|count", 1)


def fold_ended_runs(registry: Registry, batch: int = 200) -> int:
    """Fold the measures of every ended run not yet counted into the metrics hash; returns how
    many runs were folded. Each run is popped once (LPOP), so concurrent scrapes never count a
    run twice; a scrape that dies between the pop and the write loses those runs' measures."""
    client, keys = registry.client, registry.keys
    folded = 0
    while run_ids := client.lpop(keys.metrics_unfolded, batch):
        with client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                rk = keys.run(run_id)
                pipe.hgetall(rk.run)
                pipe.hgetall(rk.steps)
            replies = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            for i in range(0, len(replies), 2):
                run, raw_steps = replies[i : i + 2]
                plan = registry.plan_by_digest(run["plan"]) if run.get("plan") else {}
                _fold_run(pipe, registry, run, plan, raw_steps)
            pipe.execute()
        folded += len(run_ids)
    return folded


def _fold_run(pipe: Any, registry: Registry, run: dict[str, str], plan: RunPlan, raw_steps: dict[str, str]) -> None:
    key = registry.keys.metrics
    records = step_records_of(raw_steps)
    for step, record in records.items():
        role = plan[step].agent if step in plan else None
        if not role or record.get("state") != "succeeded" or "skipped_by" in record:
            continue
        pipe.hincrbyfloat(key, f"steps_total|{role}|succeeded", 1)
        if "dispatched_at" in record and "started_at" in record:
            wait = float(record["started_at"]) - float(record["dispatched_at"])
            _observe(pipe, key, "queue_wait_seconds", wait, BUCKETS)
        if "body_s" in record:
            _observe(pipe, key, "step_body_seconds", float(record["body_s"]), BUCKETS)
        for kind in ("prompt", "completion", "cached", "reinjected"):
            if f"{kind}_tokens" in record:
                pipe.hincrbyfloat(key, f"tokens_total|{kind}", int(record[f"{kind}_tokens"] or 0))
    if run.get("state") != "succeeded":
        return
    timings = compute_timings(run, plan, dict(records), None, registry.settings.model_prices)
    if timings.wall_s is not None:
        _observe(pipe, key, "run_wall_seconds", timings.wall_s, BUCKETS)
    if timings.overhead_s is not None:
        _observe(pipe, key, "run_overhead_seconds", max(timings.overhead_s, 0.0), BUCKETS)
    if timings.tax_ratio is not None:
        _observe(pipe, key, "run_tax_ratio", max(timings.tax_ratio, 0.0), RATIO_BUCKETS)
    pipe.hincrbyfloat(key, "cost_total", timings.cost)
    # What a broadcast of every earlier output would have re-injected in this run (succeeded runs).
    pipe.hincrbyfloat(key, "tokens_total|broadcast_reinjected", timings.broadcast_reinjected_tokens)


class RegistryCollector(Collector):
    """At scrape time: folds the runs ended since the last scrape, then reads the shared metrics
    hash (one HGETALL) and two index sizes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        fold_ended_runs(self.registry)
        raw: dict[str, str] = self.registry.client.hgetall(self.registry.keys.metrics)
        steps = CounterMetricFamily("agentchord_steps", "Agent steps by role and outcome.", labels=["role", "state"])
        runs = CounterMetricFamily("agentchord_runs", "Runs by final state.", labels=["state"])
        tokens = CounterMetricFamily("agentchord_tokens", "Model tokens by kind.", labels=["kind"])
        # Every kind is exported from the first scrape on.
        for kind in ("prompt", "completion", "cached", "reinjected", "broadcast_reinjected"):
            raw.setdefault(f"tokens_total|{kind}", "0")
        histograms: dict[str, dict[str, float]] = defaultdict(dict)
        for field, value in raw.items():
            parts = field.split("|")
            if parts[0] == "steps_total" and len(parts) == 3:
                steps.add_metric([parts[1], parts[2]], float(value))
            elif parts[0] == "runs_total" and len(parts) == 2:
                runs.add_metric([parts[1]], float(value))
            elif parts[0] == "tokens_total" and len(parts) == 2:
                tokens.add_metric([parts[1]], float(value))
            elif len(parts) >= 2 and parts[0] in _HELP:
                histograms[parts[0]]["|".join(parts[1:])] = float(value)
        yield steps
        yield runs
        yield tokens
        yield CounterMetricFamily("agentchord_step_retries", "Step retries after transient failures.",
                                  value=float(raw.get("step_retries_total", 0)))  # fmt: skip
        yield CounterMetricFamily("agentchord_cost", "Model cost of succeeded runs (price table).",
                                  value=float(raw.get("cost_total", 0)))  # fmt: skip
        budget = CounterMetricFamily(
            "agentchord_budget_events", "Runs that reached their budget's soft limit (warning) or a hard one.",
            labels=["kind"],
        )  # fmt: skip
        for kind in ("warning", "exceeded"):
            budget.add_metric([kind], float(raw.get(f"budget_total|{kind}", 0)))
        yield budget
        for name, values in histograms.items():
            bounds = RATIO_BUCKETS if name == "run_tax_ratio" else BUCKETS
            cumulative, buckets = 0.0, []
            for bound in [*(str(b) for b in bounds), "+Inf"]:
                cumulative += values.get(f"bucket|{bound}", 0.0)
                buckets.append((bound, cumulative))
            yield HistogramMetricFamily(
                f"agentchord_{name}", _HELP[name], buckets=buckets, sum_value=values.get("sum", 0.0)
            )
        client = self.registry.client
        yield GaugeMetricFamily("agentchord_parked_approvals", "Approvals waiting for a decision.",
                                value=float(client.zcard(self.registry.keys.pending_approvals)))  # fmt: skip
        yield GaugeMetricFamily("agentchord_active_runs", "Runs not yet finished.",
                                value=float(client.zcard(self.registry.keys.active_runs)))  # fmt: skip
        running, _, queued = self.registry.admission_counts()
        admitted = GaugeMetricFamily("agentchord_admitted_runs", "Counted running runs per tenant.", labels=["tenant"])
        waiting = GaugeMetricFamily("agentchord_queued_runs", "Runs waiting for admission per tenant.",
                                    labels=["tenant"])  # fmt: skip
        for tenant, count in running.items():
            admitted.add_metric([tenant], float(count))
        for lane, count in queued.items():
            waiting.add_metric([lane], float(count))
        yield admitted
        yield waiting
