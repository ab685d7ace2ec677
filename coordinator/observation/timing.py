"""The coordination-tax accounting of one run, computed from the registry's records.

Timestamps are the Redis server's clock (see proj.lua), so they compare across machines;
``body_s``, ``model_s`` and ``run_s`` are monotonic durations measured in the worker.

Per step:
- handoff: the latest dependency finished (or the run started) -> this step dispatched
  (registry reads and writes, serialisation, the coordinator callback hop);
- queue wait: dispatched -> started (``broker`` part: dispatched -> received by a worker); time
  spent waiting for a provider's rate limit is reported apart and counted as queueing, not work;
- body: the agent's own time, ``model`` inside it; step overhead: started -> finished minus the
  body (the agent task's registry I/O);
- parked: an approval gate's time, the reviewer's, never overhead.

Per run: wall, critical-path work (agent bodies on the longest path), overhead = wall - that
work - parked time, tax ratio = overhead / (wall - parked), tokens, re-injected tokens, cost,
broker messages, and a ``breakdown`` of the wall time along the critical chain that adds up to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from agents.llm import step_cost
from proj.plan import RunPlan


class StepTiming(BaseModel):
    step: str
    agent: str
    state: str
    reused_from: str | None = None  # a rerun's step whose output was reused from that run
    model: str = ""
    start_offset_s: float | None = None
    handoff_s: float | None = None
    queue_wait_s: float | None = None
    broker_wait_s: float | None = None
    body_s: float | None = None
    model_s: float | None = None
    rate_limit_wait_s: float = 0.0
    parked_s: float | None = None
    step_overhead_s: float | None = None
    run_s: float | None = None
    attempts: int = 0
    context_bytes: int = 0
    result_bytes: int = 0
    broker_messages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reinjected_tokens: int = 0
    # Re-injected tokens had the step been shown every output finished before it started (a
    # central brain's broadcast), from the recorded outputs' sizes; 0 for a step with no model call.
    broadcast_reinjected_tokens: int = 0
    cost: float = 0.0


class Breakdown(BaseModel):
    """The run's wall time along its critical chain (last step back through the latest-finishing
    dependency): these parts add up to ``wall_s``."""

    steps: list[str]
    handoff_s: float
    queue_wait_s: float
    body_s: float
    step_overhead_s: float
    parked_s: float
    finalize_s: float

    @property
    def total_s(self) -> float:
        return self.handoff_s + self.queue_wait_s + self.body_s + self.step_overhead_s + self.parked_s + self.finalize_s


class RunTimings(BaseModel):
    wall_s: float | None
    critical_path_body_s: float
    parked_s: float
    overhead_s: float | None
    tax_ratio: float | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reinjected_tokens: int = 0
    broadcast_reinjected_tokens: int = 0
    cost: float = 0.0
    broker_messages: int = 0
    breakdown: Breakdown | None = None
    steps: list[StepTiming]


def _f(record: dict[str, str], name: str) -> float | None:
    value = record.get(name)
    return float(value) if value not in (None, "") else None


def _diff(end: float | None, start: float | None) -> float | None:
    return end - start if end is not None and start is not None else None


def compute_timings(
    run: dict[str, str],
    plan: RunPlan,
    records: dict[str, dict[str, str]],
    events: list[Any] | None = None,
    prices: Mapping[str, tuple[float, ...]] | None = None,
) -> RunTimings:
    """The accounting of one run from its run record, plan, step records and event log.

    A step's cost is the one stored when it finished (the prices in force then); ``prices``
    (model -> per 1M prompt, completion, cached tokens) only prices records from before costs were
    stored.
    """
    created = _f(run, "created_at")
    finished = _f(run, "finished_at")
    messages = _broker_messages(plan, events or [])
    prices = prices or {}
    steps: list[StepTiming] = []
    body: dict[str, float] = {}
    for name, step_plan in plan.items():
        record = records.get(name, {})
        after = list(step_plan.after)
        dep_finishes = [_f(records.get(dep, {}), "finished_at") for dep in after]
        ready_at = max((t for t in dep_finishes if t is not None), default=None) if after else created
        dispatched, started, ended = (_f(record, k) for k in ("dispatched_at", "started_at", "finished_at"))
        # Waiting for a provider's rate limit is queueing, not work: it leaves the body's time.
        wait_s = _f(record, "rate_limit_wait_s") or 0.0
        raw_body_s = _f(record, "body_s")
        body_s = raw_body_s - wait_s if raw_body_s is not None else None
        parked_s = _diff(ended, started) if step_plan.is_gate else None
        body[name] = body_s or parked_s or 0.0
        run_s = _diff(ended, started)
        prompt, completion = int(record.get("prompt_tokens", 0)), int(record.get("completion_tokens", 0))
        model = record.get("model", "")
        cached = int(record.get("cached_tokens", 0))
        stored_cost = record.get("cost")
        cost = float(stored_cost) if stored_cost else step_cost(prices, model, prompt, completion, cached)
        attempts = int(record.get("body_runs", 0))
        steps.append(
            StepTiming(
                step=name,
                agent=step_plan.agent or "approval",
                state=record.get("state", "pending"),
                reused_from=record.get("reused_from"),
                model=model,
                start_offset_s=_diff(started, created),
                handoff_s=_diff(dispatched, ready_at),
                queue_wait_s=_diff(started, dispatched),
                broker_wait_s=_diff(_f(record, "received_at"), dispatched),
                body_s=body_s,
                model_s=_f(record, "model_s"),
                parked_s=parked_s,
                rate_limit_wait_s=wait_s,
                step_overhead_s=run_s - raw_body_s if run_s is not None and raw_body_s is not None else None,
                run_s=_f(record, "run_s"),
                attempts=attempts,
                context_bytes=int(record.get("context_bytes", 0)),
                result_bytes=int(record.get("result_bytes", 0)),
                broker_messages=messages.get(name, 0),
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=cached,
                reinjected_tokens=int(record.get("reinjected_tokens", 0)),
                broadcast_reinjected_tokens=_broadcast(name, records) if prompt else 0,
                cost=cost,
            )
        )
    critical = _critical_path(plan, body)  # parked time included: it is on the path
    parked = sum(step.parked_s or 0.0 for step in steps)
    wall = _diff(finished, created)
    overhead = wall - critical if wall is not None else None
    # The tax ratio is over the time the machines could have spent, so parked time is left out.
    active = wall - parked if wall is not None else None
    ratio = overhead / active if overhead is not None and active else None
    return RunTimings(
        wall_s=wall,
        critical_path_body_s=critical - parked,
        parked_s=parked,
        overhead_s=overhead,
        tax_ratio=ratio,
        prompt_tokens=sum(s.prompt_tokens for s in steps),
        completion_tokens=sum(s.completion_tokens for s in steps),
        cached_tokens=sum(s.cached_tokens for s in steps),
        reinjected_tokens=sum(s.reinjected_tokens for s in steps),
        broadcast_reinjected_tokens=sum(s.broadcast_reinjected_tokens for s in steps),
        cost=sum(s.cost for s in steps),
        broker_messages=sum(messages.values()),
        breakdown=_breakdown(plan, records, steps, created, finished),
        steps=steps,
    )


def _broadcast(step: str, records: dict[str, dict[str, str]]) -> int:
    """Tokens of every other step's output that was finished when ``step`` started."""
    started = _f(records.get(step, {}), "started_at")
    if started is None:
        return 0
    return sum(
        int(record.get("output_tokens", 0))
        for name, record in records.items()
        if name != step and (finished := _f(record, "finished_at")) is not None and finished <= started
    )


def _critical_path(plan: RunPlan, body: dict[str, float]) -> float:
    longest: dict[str, float] = {}

    def path_to(name: str) -> float:
        if name not in longest:
            after = plan[name].after
            longest[name] = body.get(name, 0.0) + max((path_to(str(d)) for d in after), default=0.0)
        return longest[name]

    return max((path_to(name) for name in plan), default=0.0)


def _breakdown(
    plan: RunPlan,
    records: dict[str, dict[str, str]],
    steps: list[StepTiming],
    created: float | None,
    finished: float | None,
) -> Breakdown | None:
    """Walk back from the last step to finish through each step's latest-finishing dependency."""
    ends = {name: _f(records.get(name, {}), "finished_at") for name in plan}
    done = [name for name, end in ends.items() if end is not None]
    if not done or created is None or finished is None:
        return None
    by_name = {step.step: step for step in steps}
    chain = [max(done, key=lambda name: ends[name] or 0.0)]
    while True:
        after = [dep for dep in plan[chain[-1]].after if ends.get(dep) is not None]
        if not after:
            break
        chain.append(max(after, key=lambda name: ends[name] or 0.0))
    chain.reverse()
    parts: dict[str, float] = defaultdict(float)
    for name in chain:
        step = by_name[name]
        parts["handoff"] += step.handoff_s or 0.0
        parts["queue"] += (step.queue_wait_s or 0.0) + step.rate_limit_wait_s
        parts["body"] += step.body_s or 0.0
        parts["overhead"] += step.step_overhead_s or 0.0
        parts["parked"] += step.parked_s or 0.0
    return Breakdown(
        steps=chain,
        handoff_s=parts["handoff"],
        queue_wait_s=parts["queue"],
        body_s=parts["body"],
        step_overhead_s=parts["overhead"],
        parked_s=parts["parked"],
        finalize_s=finished - (ends[chain[-1]] or finished),
    )


def _broker_messages(plan: RunPlan, events: list[Any]) -> dict[str, int]:
    """Messages sent for each step, from the event log: the agent task, again on every retry and
    re-drive (successors are sent by the worker that claimed them: no callback message); a
    gate's notifications."""
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        step = event.fields.get("step", "")
        is_gate = step in plan and plan[step].is_gate
        if (event.type == "step_dispatched" and not is_gate) or event.type in (
            "step_retrying",
            "step_redriven",
            "operator_retry",
        ):
            counts[step] += 1
        elif event.type == "notification_attempt":
            counts[event.fields.get("step", "") or "(notifications)"] += 1
    return dict(counts)
