"""Per-step timing and the run's coordination overhead, computed from the registry's records.

All timestamps are the Redis server's clock (see proj.lua), so they compare across machines.

- queue wait: dispatched -> started (the message waited for a worker);
- handoff: the latest dependency finished (or the run started) -> this step dispatched;
- step overhead: started -> finished minus the agent body (registry I/O in the agent task);
- run overhead: wall time minus the critical path of agent-body time (approval gates count as
  parked, not as overhead).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class StepTiming(BaseModel):
    step: str
    agent: str
    state: str
    start_offset_s: float | None = None
    handoff_s: float | None = None
    queue_wait_s: float | None = None
    body_s: float | None = None
    parked_s: float | None = None
    step_overhead_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    body_runs: int = 0


class RunTimings(BaseModel):
    wall_s: float | None
    critical_path_body_s: float
    parked_s: float
    overhead_s: float | None
    tax_ratio: float | None
    steps: list[StepTiming]


def _f(record: dict[str, str], name: str) -> float | None:
    value = record.get(name)
    return float(value) if value not in (None, "") else None


def _diff(end: float | None, start: float | None) -> float | None:
    return end - start if end is not None and start is not None else None


def compute_timings(
    run: dict[str, str], plan: dict[str, dict[str, Any]], records: dict[str, dict[str, str]]
) -> RunTimings:
    """Timings of one run from its run record, its plan and its step records."""
    created = _f(run, "created_at")
    finished = _f(run, "finished_at")
    steps: list[StepTiming] = []
    body: dict[str, float] = {}
    for name, step_plan in plan.items():
        record = records.get(name, {})
        after = [str(dep) for dep in step_plan.get("after", [])]
        dep_finishes = [_f(records.get(dep, {}), "finished_at") for dep in after]
        ready_at = max((t for t in dep_finishes if t is not None), default=None) if after else created
        dispatched, started, ended = (_f(record, k) for k in ("dispatched_at", "started_at", "finished_at"))
        body_s = _f(record, "body_s")
        # An approval gate's time is the reviewer's: parked, neither work nor overhead.
        parked_s = _diff(ended, started) if step_plan.get("approval") else None
        body[name] = body_s or parked_s or 0.0
        run_s = _diff(ended, started)
        steps.append(
            StepTiming(
                step=name,
                agent=str(step_plan.get("agent") or "approval"),
                state=record.get("state", "pending"),
                start_offset_s=_diff(started, created),
                handoff_s=_diff(dispatched, ready_at),
                queue_wait_s=_diff(started, dispatched),
                body_s=body_s,
                parked_s=parked_s,
                step_overhead_s=run_s - body_s if run_s is not None and body_s is not None else None,
                prompt_tokens=int(record.get("prompt_tokens", 0)),
                completion_tokens=int(record.get("completion_tokens", 0)),
                body_runs=int(record.get("body_runs", 0)),
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
        steps=steps,
    )


def _critical_path(plan: dict[str, dict[str, Any]], body: dict[str, float]) -> float:
    longest: dict[str, float] = {}

    def path_to(name: str) -> float:
        if name not in longest:
            after = plan[name].get("after", [])
            longest[name] = body.get(name, 0.0) + max((path_to(str(d)) for d in after), default=0.0)
        return longest[name]

    return max((path_to(name) for name in plan), default=0.0)
