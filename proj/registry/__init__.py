"""The shared registry in Redis: runs, step results, claims, timings and the event log.

Agents and coordinator callbacks are stateless; everything a run knows lives here, under the
run's namespace (see :mod:`proj.keys`). Step transitions are Lua scripts (:mod:`proj.lua`), so
each is one atomic round trip and duplicate deliveries cannot interleave; which transitions are
legal is :mod:`proj.step_states`. One module per concept: plans, runs, steps, approvals, events,
validation; :class:`Registry` is all of them over one connection pool.
"""

from __future__ import annotations

from functools import lru_cache

from proj.connections import redis_client
from proj.registry.approvals import ApprovalsMixin
from proj.registry.budgets import BudgetsMixin
from proj.registry.events import EventsMixin
from proj.registry.lineage import ChildrenMixin, ReusedOutput
from proj.registry.plans import SPEC_FIELD
from proj.registry.records import (
    ADMITTED,
    TERMINAL_STATES,
    BeginOutcome,
    Event,
    FinishOutcome,
    RunSnapshot,
    StepWork,
    step_records_of,
)
from proj.registry.steps import StepsMixin
from proj.registry.validation import ValidationMixin
from proj.registry.workers import WorkerBeat, WorkersMixin
from proj.settings import Settings

__all__ = [
    "ADMITTED",
    "SPEC_FIELD",
    "TERMINAL_STATES",
    "BeginOutcome",
    "Event",
    "FinishOutcome",
    "Registry",
    "ReusedOutput",
    "RunSnapshot",
    "StepWork",
    "WorkerBeat",
    "registry_for",
    "step_records_of",
]


class Registry(ChildrenMixin, StepsMixin, ApprovalsMixin, EventsMixin, ValidationMixin, WorkersMixin, BudgetsMixin):
    """Registry operations over one Redis connection pool.

    Example:
        >>> registry = Registry.from_settings(Settings(redis_url="redis://127.0.0.1:6379/0"))
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(redis_client(settings), settings)


@lru_cache(maxsize=8)
def _registry_for(url: str, settings: Settings) -> Registry:
    return Registry.from_settings(settings)


def registry_for(settings: Settings) -> Registry:
    """The process-wide registry for ``settings`` (one connection pool per URL and settings)."""
    return _registry_for(settings.resolved_redis_url, settings)
