"""A run's budget, asked before each model call a step makes (see :mod:`proj.budget`)."""

from __future__ import annotations

from collections.abc import Mapping

from agents.llm import Completion, Message, count_tokens, step_cost
from proj.errors import BudgetExceededError
from proj.registry import Registry


class RunBudgetGate:
    """Reserves each call's estimated cost in the run's record and settles what it cost.

    The estimate is the prompt's tokens (as :func:`count_tokens` counts them) plus the most a
    completion may be (``llm_max_tokens``, the ``max_tokens`` every call sends), at the model's
    prices. A run without a budget answers the first reservation with ``none``; the gate then
    asks no more for this step (one round trip per step that calls a model)."""

    def __init__(
        self,
        registry: Registry,
        run_id: str,
        step: str,
        prices: Mapping[str, tuple[float, ...]],
        completion_estimate: int,
    ) -> None:
        self.registry, self.run_id, self.step = registry, run_id, step
        self.prices, self.completion_estimate = prices, completion_estimate
        self.budgeted = True

    def admit(self, model: str, messages: list[Message]) -> object:
        if not self.budgeted:
            return None
        prompt = sum(count_tokens(message.content) for message in messages)
        est_tokens = prompt + self.completion_estimate
        est_cost = step_cost(self.prices, model, prompt, self.completion_estimate, 0)
        status, reason, first = self.registry.reserve_call(self.run_id, self.step, est_cost, est_tokens)
        if status == "refused":
            raise BudgetExceededError(self.run_id, reason, first)
        if status == "none":
            self.budgeted = False
            return None
        return (est_cost, est_tokens)

    def settle(self, ticket: object, completion: Completion | None) -> None:
        if not isinstance(ticket, tuple):
            return
        est_cost, est_tokens = ticket
        cost, tokens = 0.0, 0
        if completion is not None:
            prompt, done, cached = completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens
            cost = step_cost(self.prices, completion.model, prompt, done, cached)
            tokens = prompt + done
        self.registry.settle_call(self.run_id, self.step, est_cost, est_tokens, cost, tokens)
