"""Prometheus metrics, aggregated in Redis so every worker on every machine adds to one set.

The registry's Lua scripts count steps, runs by final state, retries and tokens, and keep
histogram buckets of queue wait and body time as they happen; :func:`record_finished_run` adds
the per-run measures (wall, overhead, tax ratio, cost) when a run succeeds. The API serves
them on ``/metrics`` through :class:`RegistryCollector`, read at scrape time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from coordinator.timing import compute_timings
from proj.registry import Registry

# Must match BUCKETS in proj/lua.py: both sides write and read the same buckets.
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


def record_finished_run(registry: Registry, run_id: str) -> None:
    """Add a succeeded run's wall time, overhead, tax ratio and cost to the shared metrics."""
    timings = compute_timings(
        registry.run_record(run_id),
        registry.snapshot(run_id).plan,
        registry.step_records(run_id),
        None,
        registry.settings.model_prices,
    )
    key = registry.keys.metrics
    with registry.client.pipeline(transaction=False) as pipe:
        if timings.wall_s is not None:
            _observe(pipe, key, "run_wall_seconds", timings.wall_s, BUCKETS)
        if timings.overhead_s is not None:
            _observe(pipe, key, "run_overhead_seconds", max(timings.overhead_s, 0.0), BUCKETS)
        if timings.tax_ratio is not None:
            _observe(pipe, key, "run_tax_ratio", max(timings.tax_ratio, 0.0), RATIO_BUCKETS)
        pipe.hincrbyfloat(key, "cost_total", timings.cost)
        pipe.execute()


class RegistryCollector(Collector):
    """Reads the shared metrics hash (one HGETALL) and two index sizes at scrape time."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        raw: dict[str, str] = self.registry.client.hgetall(self.registry.keys.metrics)
        steps = CounterMetricFamily("agentchord_steps", "Agent steps by role and outcome.", labels=["role", "state"])
        runs = CounterMetricFamily("agentchord_runs", "Runs by final state.", labels=["state"])
        tokens = CounterMetricFamily("agentchord_tokens", "Model tokens by kind.", labels=["kind"])
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
