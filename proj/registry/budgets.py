"""Budgets: reserve a model call's estimated cost, settle what it cost, raise the limits, read the spend."""

from __future__ import annotations

from typing import Any

from proj.budget import Budget, BudgetSpend
from proj.registry._base import RegistryBase


class BudgetsMixin(RegistryBase):
    """A run's spend against its budget (proj/lua/budget.lua): one round trip per call edge."""

    def _budget_keys(self, run_id: str) -> list[str]:
        rk = self.run_keys(run_id)
        return [rk.run, rk.events, self.keys.metrics]

    def reserve_call(self, run_id: str, step: str, est_cost: float, est_tokens: int) -> tuple[str, str, bool]:
        """Ask to start a model call estimated at ``est_cost``/``est_tokens``: ``('ok', '', False)``
        (reserved: settle it), ``('none', '', False)`` (the run has no budget: nothing to settle) or
        ``('refused', why, first)``, ``first`` when no call was refused since the limits were set."""
        reply = self._budget(keys=self._budget_keys(run_id), args=["reserve", step, repr(est_cost), est_tokens])
        if reply[0] == "refused":
            return "refused", str(reply[1]), reply[2] == "1"
        return str(reply[0]), "", False

    def settle_call(self, run_id: str, step: str, est_cost: float, est_tokens: int, cost: float, tokens: int) -> None:
        """A reserved call ended: its estimate gives way to what it cost (also when it failed)."""
        args: list[Any] = ["settle", step, repr(est_cost), est_tokens, repr(cost), tokens]
        self._budget(keys=self._budget_keys(run_id), args=args)

    def raise_budget(self, run_id: str, budget: Budget, actor: str) -> bool:
        """Replace the run's limits (a budget approval, an operator); False if it has no budget."""
        payload = budget.model_dump_json(exclude_none=True)
        return bool(self._budget(keys=self._budget_keys(run_id), args=["raise", payload, actor])[0] == "ok")

    def spend(self, run_id: str) -> BudgetSpend | None:
        """The run's spend against its budget; None when it has none."""
        fields = ["budget", "spend_cost", "spend_tokens", "spend_calls", "spend_in_flight", "spend_warned"]
        raw, cost, tokens, calls, in_flight, warned, exceeded = self.client.hmget(
            self.run_keys(run_id).run, [*fields, "spend_exceeded"]
        )
        if not raw:
            return None
        return BudgetSpend(
            budget=Budget.model_validate_json(raw),
            spent_cost_usd=float(cost or 0),
            spent_tokens=int(tokens or 0),
            model_calls=int(calls or 0),
            in_flight_calls=int(in_flight or 0),
            warned=bool(warned),
            exceeded=exceeded,
        )
