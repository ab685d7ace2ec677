"""A step's plan: everything a worker needs to run and hand off one step, resolved once.

Built by :mod:`coordinator.engine.compile` from a workflow spec, stored once per workflow version as JSON
(see :meth:`proj.registry.Registry.store_plan`), parsed once per process and shared: frozen.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from proj.errors import MapItemsError
from proj.policy import RetryPolicy


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GatePlan(_Frozen):
    """An approval gate (see ``coordinator.engine.specs.Approval``), as the engine needs it."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    prompt: str = "Approve?"
    show: tuple[str, ...] | None = None  # None: the gate's dependencies
    data_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    timeout_s: float | None = None
    on_timeout: str = "reject"
    on_reject: str | None = None
    deciders: tuple[str, ...] | None = None  # token names that may decide it over HTTP


class ValidationPlan(_Frozen):
    """A validator gate on a step: who checks it, how confident is enough, how many rounds."""

    agent: str
    threshold: float
    max_rounds: int
    params: dict[str, Any] = Field(default_factory=dict)
    on_exhausted: str = "escalate"
    check_step: str


class StepPlan(_Frozen):
    """One step of one workflow version."""

    agent: str | None = None  # None: an approval gate, which no agent runs
    after: tuple[str, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)
    index: int = 0  # the step's position in the workflow (plans are listed in this order)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    time_limit_s: float | None = None
    soft_time_limit_s: float | None = None
    on_failure: str = "escalate"
    priority: int | None = None  # Celery message priority (Redis: 0 first, 9 last; None is 0)
    # The steps that depend on this one, each with all its dependencies: what the script that
    # stores this step's result checks to claim the ones it made ready.
    successors: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # No gate, router, validator or failure handed to a human anywhere in the workflow: the
    # step path decides readiness and the run's end by itself.
    inline: bool = False
    run_steps: int = 0  # inline only: how many results end the run
    when: dict[str, str] | None = None  # router step -> the branch this step belongs to
    branches: tuple[str, ...] | None = None  # a router: the branches it may choose
    approval: GatePlan | None = None
    validation: ValidationPlan | None = None
    validates: str | None = None  # a validator step: the step whose candidates it checks
    uses: dict[str, tuple[str, ...]] | None = None  # dependency -> the only fields of it this step sees
    # A map step: one member per element of the list at this path ("<dependency>.<key>...") in a
    # dependency's output; members are steps named "<step>[<i>]" (see member_name).
    map: str | None = None
    on_member_failure: str = "escalate"  # escalate | fail | continue
    # A child step: the workflow it runs (its spec, resolved when the parent started, so every
    # process can start it and a later deploy does not change it) and where its input comes from.
    workflow: str | None = None
    child_spec: str | None = None
    input_from: str | None = None

    @property
    def is_gate(self) -> bool:
        return self.approval is not None

    @property
    def is_check(self) -> bool:
        """A validator step: run by its generator's loop, never dispatched by readiness."""
        return self.validates is not None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True, by_alias=True)


# A run's plan: every step's, in the order the workflow declared them.
RunPlan = dict[str, StepPlan]


@lru_cache(maxsize=4096)
def parse_plan(raw: str) -> StepPlan:
    """A step plan from its stored JSON. Cached: every run of a workflow version stores the same
    strings, so a process parses each once."""
    return StepPlan.model_validate_json(raw)


_MEMBER = re.compile(r"^(?P<step>.+)\[(?P<index>[0-9]+)\]$")


def member_name(step: str, index: int) -> str:
    """The name of member ``index`` of map step ``step``: ``review_file[3]`` (step names have no brackets)."""
    return f"{step}[{index}]"


def member_of(step: str) -> tuple[str, int] | None:
    """``("review_file", 3)`` for ``review_file[3]``; None for a step that is no map member."""
    found = _MEMBER.match(step)
    return (found["step"], int(found["index"])) if found else None


def plan_for(plans: RunPlan, step: str) -> StepPlan | None:
    """A step's plan; a map member's is its map step's. None: no such step."""
    if step in plans:
        return plans[step]
    member = member_of(step)
    if member and member[0] in plans and plans[member[0]].map:
        return plans[member[0]]
    return None


def map_items(step: str, path: str, dependencies: dict[str, Any], max_items: int) -> list[Any]:
    """The list a map step's ``path`` leads to in its dependencies' outputs; raises
    :class:`MapItemsError` naming what was found instead."""
    source, *keys = path.split(".")
    value: Any = dependencies.get(source)
    walked = source
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise MapItemsError(step, f"{path!r}: {walked!r} has no key {key!r}")
        value, walked = value[key], f"{walked}.{key}"
    if not isinstance(value, list):
        raise MapItemsError(step, f"{path!r} is a {type(value).__name__}, not a list")
    if len(value) > max_items:
        raise MapItemsError(step, f"{path!r} has {len(value)} items, more than AGENTCHORD_MAP_MAX_ITEMS ({max_items})")
    return value
