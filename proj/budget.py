"""Per-run budgets: what a run may spend on models, and what it has spent.

A budget is set per run (``start(..., budget=Budget(...))``), per workflow (``budget:`` in its
spec) or by default (``AGENTCHORD_DEFAULT_BUDGET``), in that order of precedence. Spend is counted
in the run's record by one Lua script (``proj/lua/budget.lua``) as model calls begin and end, so
every worker on every machine adds to the same counters atomically.

Before a model call starts it asks for its estimated cost (prompt tokens as counted, plus the
most completion tokens a call may produce): the call is refused once the spend so far, the
estimates of the calls in flight and its own would pass a hard limit. The overshoot is therefore
bounded by what calls already in flight spend beyond their estimates.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What a budget limits, as (field of Budget, counter in the run's record, name in messages).
LIMITS: tuple[tuple[str, str, str], ...] = (
    ("max_cost_usd", "spent_cost", "cost"),
    ("max_tokens", "spent_tokens", "tokens"),
    ("max_model_calls", "model_calls", "model calls"),
)


class Budget(BaseModel):
    """Hard limits on one run's model spend; at least one must be set.

    Example:
        >>> Budget(max_cost_usd=0.50, max_model_calls=40)
        Budget(max_cost_usd=0.5, max_tokens=None, max_model_calls=40, max_wall_s=None, ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_cost_usd: float | None = Field(default=None, gt=0, description="Most US dollars the run's model calls cost.")
    max_tokens: int | None = Field(default=None, gt=0, description="Most prompt + completion tokens.")
    max_model_calls: int | None = Field(default=None, gt=0, description="Most model calls.")
    max_wall_s: float | None = Field(
        default=None, gt=0, description="No model call starts later than this many seconds after the run started."
    )
    soft_limit: float = Field(
        default=0.8, gt=0, le=1, description="Share of a limit at which the run gets a `budget_warning` event."
    )
    on_exceeded: Literal["fail", "approval"] = Field(
        default="fail",
        description="At a hard limit: end the run `budget_exceeded`, or park it as an approval that "
        "asks to raise the budget (approve: the step that hit the limit runs again).",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if all(value is None for value in (self.max_cost_usd, self.max_tokens, self.max_model_calls, self.max_wall_s)):
            raise ValueError("a budget needs at least one of max_cost_usd, max_tokens, max_model_calls, max_wall_s")
        return self

    def raised(self, factor: float = 2.0) -> Budget:
        """This budget with every limit multiplied by ``factor`` (what a budget approval proposes)."""
        update: dict[str, float | int] = {}
        for name in ("max_cost_usd", "max_tokens", "max_model_calls", "max_wall_s"):
            value = getattr(self, name)
            if value is not None:
                update[name] = type(value)(value * factor) if isinstance(value, int) else value * factor
        return self.model_copy(update=update)


class BudgetSpend(BaseModel):
    """A run's spend against its budget (``Run.budget()``, the report, ``GET /workflows/{id}``)."""

    budget: Budget
    spent_cost_usd: float = 0.0
    spent_tokens: int = 0
    model_calls: int = 0
    in_flight_calls: int = 0
    warned: bool = False
    exceeded: str | None = Field(default=None, description="Why a model call was refused, once one was.")

    def lines(self) -> list[str]:
        """One line per limit: spent of limit (share)."""
        out = []
        spent = {"cost": self.spent_cost_usd, "tokens": self.spent_tokens, "model calls": self.model_calls}
        for field, _counter, label in LIMITS:
            limit = getattr(self.budget, field)
            if limit is None:
                continue
            value = spent[label]
            shown = f"${value:.4f} of ${limit:.4f}" if label == "cost" else f"{value:,} of {limit:,}"
            out.append(f"{label}: {shown} ({value / limit:.0%})")
        if self.budget.max_wall_s is not None:
            out.append(f"wall: no model call after {self.budget.max_wall_s:g}s")
        return out
