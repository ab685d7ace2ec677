"""The deterministic offline backend: our ``TestModel``. No network, same answer every time.

It does real, simple work: each role registers a *skill* (a plain function over the messages,
e.g. the reviewer's skill flags concrete issues in the diff it is shown) and the offline model
answers a call for that role with its skill's JSON. It can also simulate model latency
(``AGENTCHORD_SIMULATED_LATENCY_MS``), so demos and benchmarks see realistic timing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from agents.llm import Completion, Message, count_tokens
from proj.settings import Settings

Skill = Callable[[list[Message]], Any]
_SKILLS: dict[str, Skill] = {}


def offline_skill(task: str) -> Callable[[Skill], Skill]:
    """Register how the offline model answers calls made with ``task=...``."""

    def register(skill: Skill) -> Skill:
        _SKILLS[task] = skill
        return skill

    return register


def _default_skill(messages: list[Message]) -> dict[str, Any]:
    # A task with no skill still gets a deterministic, input-derived answer.
    text = messages[-1].content if messages else ""
    words = text.split()
    return {"summary": " ".join(words[:30]), "words": len(words)}


class OfflineModel:
    """Deterministic backend that answers from registered skills."""

    name = "offline"

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_s = latency_ms / 1000.0

    def complete(
        self, messages: list[Message], *, task: str | None = None, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        started = time.perf_counter()
        skill: Skill = _SKILLS.get(task or "", _default_skill)
        answer = skill(messages)
        if isinstance(answer, BaseModel):
            text = answer.model_dump_json()
        else:
            text = answer if isinstance(answer, str) else json.dumps(answer, sort_keys=True)
        if self.latency_s:
            time.sleep(self.latency_s)  # simulated model latency, on purpose
        return Completion(
            text=text,
            model=self.name,
            prompt_tokens=sum(count_tokens(m.content) for m in messages),
            completion_tokens=count_tokens(text),
            latency_s=time.perf_counter() - started,
        )


def build(settings: Settings, _model: str) -> OfflineModel:
    """The ``offline`` backend's model (any model name: the offline model is one)."""
    return OfflineModel(settings.simulated_latency_ms)


def last_user_json(messages: list[Message]) -> dict[str, Any]:
    """The last user message parsed as a JSON object (roles send their context that way)."""
    for message in reversed(messages):
        if message.role == "user":
            try:
                value = json.loads(message.content)
            except json.JSONDecodeError:
                return {"text": message.content}
            return value if isinstance(value, dict) else {"value": value}
    return {}
