"""The model interface: messages in; text, token counts and latency out.

One small protocol (:class:`ChatModel`) that every backend implements, and a
:class:`MeteredModel` wrapper that adds each call's usage to the running step's meter, so
backends never have to remember to report tokens. Which backend a role calls is
:mod:`agents.backends`; the backends are :mod:`agents.offline` and :mod:`agents.openai_backend`
(which translates provider errors, there and only there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from proj.tracing import span

# The first message of a prompt shaped for prefix caching (StepContext.prompt): the run's shared
# context, byte-identical for every step of a run, so a provider serves it from its cache.
SHARED_CONTEXT_HEADER = "Run context (JSON):\n"


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)


class Completion(BaseModel):
    """One model call's answer and what it cost."""

    text: str
    model: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cached_tokens: int = Field(
        default=0, ge=0, description="Prompt tokens the provider served from its prefix cache (billed lower)."
    )
    latency_s: float = Field(ge=0)
    rate_limit_wait_s: float = Field(default=0.0, ge=0, description="Time spent waiting for a rate limit.")


class ChatModel(Protocol):
    """What every backend implements."""

    name: str

    def complete(
        self, messages: list[Message], *, task: str | None = None, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        """Answer ``messages``. ``task`` names the role asking (a hint, e.g. for the offline
        backend); ``json_schema`` asks for a JSON answer of that shape where the backend can."""
        ...


class UsageMeter:
    """Model usage of one step execution."""

    def __init__(self) -> None:
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.reinjected_tokens = 0
        self.latency_s = 0.0
        self.rate_limit_wait_s = 0.0
        self.model = ""
        # Text of earlier steps' outputs that the agent put into its prompts (StepContext.inject).
        self.injected: list[str] = []

    def add(self, completion: Completion, messages: list[Message]) -> None:
        self.calls += 1
        self.model = completion.model
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.cached_tokens += min(completion.cached_tokens, completion.prompt_tokens)
        self.latency_s += completion.latency_s
        self.rate_limit_wait_s += completion.rate_limit_wait_s
        # Re-injected: prompt tokens that came from earlier steps' outputs, counted once per
        # message that carries them.
        for message in messages:
            self.reinjected_tokens += sum(count_tokens(text) for text in self.injected if text in message.content)


class CallGate(Protocol):
    """Asked before every model call (a run's budget: :class:`agents.spend.RunBudgetGate`)."""

    def admit(self, model: str, messages: list[Message]) -> object:
        """A ticket for :meth:`settle`; raises (``BudgetExceededError``) to refuse the call."""
        ...

    def settle(self, ticket: object, completion: Completion | None) -> None:
        """The call ended (``None``: it failed)."""
        ...


class MeteredModel:
    """Wraps a backend and adds each completion's usage to ``meter``. With ``on_token``, a
    backend that can stream (``streams = True``) hands it the answer's text as it arrives; with
    ``gate``, every call asks it first (and tells it what the call cost)."""

    def __init__(
        self,
        backend: ChatModel,
        meter: UsageMeter,
        on_token: Callable[[str], None] | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self.backend = backend
        self.meter = meter
        self.name = backend.name
        self.on_token = on_token if getattr(backend, "streams", False) else None
        self.gate = gate

    def complete(
        self, messages: list[Message], *, task: str | None = None, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        ticket = self.gate.admit(self.name, messages) if self.gate is not None else None
        completion: Completion | None = None
        try:
            completion = self._complete(messages, task, json_schema)
        finally:
            if self.gate is not None:
                self.gate.settle(ticket, completion)
        return completion

    def _complete(self, messages: list[Message], task: str | None, json_schema: dict[str, Any] | None) -> Completion:
        with span("agentchord.model_call", **{"agentchord.model": self.name, "agentchord.task": task}) as current:
            if self.on_token is not None:
                completion = self.backend.complete(  # type: ignore[call-arg]
                    messages, task=task, json_schema=json_schema, on_token=self.on_token
                )
            else:
                completion = self.backend.complete(messages, task=task, json_schema=json_schema)
            self.meter.add(completion, messages)
            current.set_attribute("agentchord.prompt_tokens", completion.prompt_tokens)
            current.set_attribute("agentchord.completion_tokens", completion.completion_tokens)
            current.set_attribute("agentchord.cached_tokens", completion.cached_tokens)
        return completion


def step_cost(prices: Mapping[str, tuple[float, ...]], model: str, prompt: int, completion: int, cached: int) -> float:
    """What a provider bills for these tokens: ``prices[model]`` is per million prompt tokens,
    completion tokens and (optionally) cached prompt tokens; without a cached rate, cached tokens
    cost the prompt rate. An unknown model costs 0."""
    rates = prices.get(model)
    if not rates:
        return 0.0
    prompt_rate, completion_rate = rates[0], rates[1]
    cached_rate = rates[2] if len(rates) > 2 else prompt_rate
    cached = min(cached, prompt)
    return ((prompt - cached) * prompt_rate + cached * cached_rate + completion * completion_rate) / 1e6


def count_tokens(text: str) -> int:
    """Approximate token count (whitespace-separated words) for backends without a tokenizer."""
    return len(text.split())
