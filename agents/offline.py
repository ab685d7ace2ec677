"""The deterministic offline backend: our ``TestModel``. No network, same answer every time.

It does real, simple work: each role registers a *skill* (a plain function over the messages,
e.g. the reviewer's skill flags concrete issues in the diff it is shown) and the offline model
answers a call for that role with its skill's JSON. It can also simulate model latency
(``AGENTCHORD_SIMULATED_LATENCY_MS``), so demos and benchmarks see realistic timing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, cast

import redis
from pydantic import BaseModel

from agents.llm import SHARED_CONTEXT_HEADER, Completion, Message, count_tokens
from proj.registry import registry_for
from proj.settings import Settings

Skill = Callable[[list[Message]], Any]
STREAM_CHUNK_WORDS = 8  # words per streamed chunk
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


class PrefixCache:
    """A provider's prompt prefix cache, simulated: prompts are cut into blocks of
    ``block_tokens`` tokens, and a block is a hit when the whole prefix up to its end was seen in
    the last ``ttl_s`` seconds (by any worker: the blocks live in Redis, as a provider's cache
    lives on its servers). ``cached_tokens`` of a call: its leading run of hit blocks."""

    def __init__(self, client: redis.Redis, namespace: str, block_tokens: int, ttl_s: int) -> None:
        self.client, self.namespace, self.block_tokens, self.ttl_s = client, namespace, block_tokens, ttl_s

    def cached_tokens(self, model: str, messages: list[Message]) -> int:
        # Tokens as the offline model counts them (the messages' words); a message boundary and
        # its role are part of the prefix's identity but not tokens.
        words = [(m.role, word) for m in messages for word in m.content.split()]
        chain, keys = hashlib.sha256(model.encode()), []
        for start in range(0, len(words) - self.block_tokens + 1, self.block_tokens):
            chain.update(json.dumps(words[start : start + self.block_tokens]).encode())
            keys.append(f"{self.namespace}:{chain.copy().hexdigest()[:32]}")
        if not keys:
            return 0
        seen = cast(list[Any], self.client.mget(keys))
        hits = next((i for i, value in enumerate(seen) if value is None), len(keys))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, 1, ex=self.ttl_s)
        pipe.execute()
        return hits * self.block_tokens


class OfflineModel:
    """Deterministic backend that answers from registered skills."""

    name = "offline"
    streams = True  # hands its answer out in chunks when asked (on_token), latency spread over them

    def __init__(self, latency_ms: float = 0.0, cache: PrefixCache | None = None) -> None:
        self.latency_s = latency_ms / 1000.0
        self.cache = cache

    def complete(
        self,
        messages: list[Message],
        *,
        task: str | None = None,
        json_schema: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Completion:
        started = time.perf_counter()
        skill: Skill = _SKILLS.get(task or "", _default_skill)
        answer = skill(messages)
        if isinstance(answer, BaseModel):
            text = answer.model_dump_json()
        else:
            text = answer if isinstance(answer, str) else json.dumps(answer, sort_keys=True)
        if on_token is not None:
            words = text.split(" ")
            chunks = [" ".join(words[i : i + STREAM_CHUNK_WORDS]) for i in range(0, len(words), STREAM_CHUNK_WORDS)]
            for index, chunk in enumerate(chunks):
                time.sleep(self.latency_s / len(chunks))  # simulated model latency, on purpose
                on_token(chunk + (" " if index < len(chunks) - 1 else ""))
        elif self.latency_s:
            time.sleep(self.latency_s)  # simulated model latency, on purpose
        return Completion(
            text=text,
            model=self.name,
            prompt_tokens=sum(count_tokens(m.content) for m in messages),
            completion_tokens=count_tokens(text),
            cached_tokens=self.cache.cached_tokens(self.name, messages) if self.cache else 0,
            latency_s=time.perf_counter() - started,
        )


def build(settings: Settings, _model: str) -> OfflineModel:
    """The ``offline`` backend's model (any model name: the offline model is one)."""
    cache = None
    if settings.simulated_cache_block_tokens:
        client = registry_for(settings).client
        namespace = f"{settings.key_prefix}:simulated-prefix-cache"
        cache = PrefixCache(client, namespace, settings.simulated_cache_block_tokens, settings.simulated_cache_ttl_s)
    return OfflineModel(settings.simulated_latency_ms, cache)


def shared_input(messages: list[Message]) -> dict[str, Any]:
    """The workflow input from a prompt's shared-context message (see StepContext.prompt), or {}."""
    for message in messages:
        if message.role == "system" and message.content.startswith(SHARED_CONTEXT_HEADER):
            shared = json.loads(message.content[len(SHARED_CONTEXT_HEADER) :])
            value = shared.get("input", {}) if isinstance(shared, dict) else {}
            return value if isinstance(value, dict) else {}
    return {}


def prompt_context(messages: list[Message]) -> dict[str, Any]:
    """What a role's prompt gives its skill: the workflow input from the shared context, overlaid
    with the step's own JSON parts (the last user message)."""
    own = last_user_json(messages)
    shared = shared_input(messages)
    if shared and set(own) == {"text"} and not own["text"].lstrip().startswith("{"):
        own = {}  # a plain-text instruction, not parts
    return {**shared, **own}


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
