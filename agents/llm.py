"""The model interface: messages in; text, token counts and latency out.

One small protocol (:class:`ChatModel`) that every backend implements, and a
:class:`MeteredModel` wrapper that adds each call's usage to the running step's meter, so
backends never have to remember to report tokens. Which backend a role calls is
:mod:`agents.backends`; the backends are :mod:`agents.offline` and :mod:`agents.openai_backend`
(which translates provider errors, there and only there).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from proj.tracing import span


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
        self.latency_s += completion.latency_s
        self.rate_limit_wait_s += completion.rate_limit_wait_s
        # Re-injected: prompt tokens that came from earlier steps' outputs, counted once per
        # message that carries them.
        for message in messages:
            self.reinjected_tokens += sum(count_tokens(text) for text in self.injected if text in message.content)


class MeteredModel:
    """Wraps a backend and adds each completion's usage to ``meter``."""

    def __init__(self, backend: ChatModel, meter: UsageMeter) -> None:
        self.backend = backend
        self.meter = meter
        self.name = backend.name

    def complete(
        self, messages: list[Message], *, task: str | None = None, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        with span("agentchord.model_call", **{"agentchord.model": self.name, "agentchord.task": task}) as current:
            completion = self.backend.complete(messages, task=task, json_schema=json_schema)
            self.meter.add(completion, messages)
            current.set_attribute("agentchord.prompt_tokens", completion.prompt_tokens)
            current.set_attribute("agentchord.completion_tokens", completion.completion_tokens)
        return completion


def count_tokens(text: str) -> int:
    """Approximate token count (whitespace-separated words) for backends without a tokenizer."""
    return len(text.split())
