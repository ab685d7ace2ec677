"""What the registry hands back: typed records of a run, a step's claim, its events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proj.plan import RunPlan, StepPlan

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "rejected", "budget_exceeded"})
# What ending a run answers when it also admitted queued runs (proj/lua/prelude.lua, finish_run).
ADMITTED = 2


@dataclass(frozen=True)
class StepWork:
    """What an agent task gets from :meth:`Registry.begin_step` when it owns the step."""

    plan: StepPlan
    input: dict[str, Any]
    dependencies: dict[str, Any]
    context_bytes: int
    attempt: int
    handoff: dict[str, Any] | None = None  # the run's handoff record, when the workflow keeps one


@dataclass(frozen=True)
class BeginOutcome:
    """Result of trying to claim a step: ``run``, ``done``, ``busy``, ``inactive``, ``missing``,
    ``failed`` (waits for an operator), ``exhausted`` (no attempts left) or ``illegal`` (its
    state allows no start: see proj.step_states)."""

    status: str
    work: StepWork | None = None
    state: str | None = None
    retry_in_ms: int = 0
    attempts: int = 0
    last_error: str = ""
    plan: StepPlan | None = None
    began_monotonic: float = 0.0


@dataclass(frozen=True)
class FinishOutcome:
    """What storing a step's result did: whether this call stored it, whether it ended the run,
    and the successors it claimed for dispatch (name and plan), which the caller must send."""

    stored: bool
    run_finished: bool = False
    claimed: tuple[tuple[str, StepPlan], ...] = ()
    admitted: bool = False  # ending the run admitted queued runs: the caller dispatches them


@dataclass(frozen=True)
class RunSnapshot:
    """What the coordinator needs to decide what is ready: one pipelined read."""

    state: str | None
    plan: RunPlan
    done: set[str]
    dispatched: set[str]
    # Decisions: gate step -> approval state, and router step -> "route:<branch>".
    approvals: dict[str, str] = field(default_factory=dict)
    traceparent: str = ""  # the run's OpenTelemetry trace context, when tracing is on
    plan_digest: str = ""  # names the stored plan of the run's workflow version

    @property
    def gates(self) -> dict[str, str]:
        """Approval gates only (without routers' choices)."""
        return {step: state for step, state in self.approvals.items() if not state.startswith("route:")}


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    at: float
    fields: dict[str, str] = field(default_factory=dict)


def step_records_of(raw_steps: dict[str, str]) -> dict[str, dict[str, str]]:
    """The steps hash (``<step>.<field>``) as ``{step: {field: value}}``."""
    records: dict[str, dict[str, str]] = {}
    for name, value in raw_steps.items():
        step, _, attr = name.rpartition(".")
        records.setdefault(step, {})[attr] = value
    return records
