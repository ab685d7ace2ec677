"""OpenAI-compatible chat completions over HTTP (OpenAI, vLLM, Ollama, llama.cpp server,
LiteLLM, most hosted APIs), with ``httpx``. Provider errors are translated here, and only here:
429, 5xx, timeouts and connection errors become :class:`TransientModelError` (carrying
``Retry-After``); other 4xx become :class:`PermanentModelError`; a structured answer that is
not valid JSON for its schema gets ``llm_repair_attempts`` re-asks, then is permanent.

    AGENTCHORD_LLM_BACKEND=openai AGENTCHORD_LLM_BASE_URL=http://localhost:11434/v1 \\
    AGENTCHORD_LLM_MODEL=llama3.1 celery -A proj worker -Q reviewer
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from jsonschema.validators import validator_for

from agents.llm import Completion, Message, count_tokens
from proj.errors import PermanentModelError, TransientModelError
from proj.ratelimit import RateLimit, RateLimiter
from proj.redaction import url_host
from proj.settings import Settings


class OpenAICompatibleModel:
    """One model on one OpenAI-compatible server."""

    streams = True  # asked to (on_token), it requests a streamed answer and hands each piece on

    def __init__(self, settings: Settings, model: str, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self.name = model
        self.provider = url_host(settings.llm_base_url)
        self.limiter = limiter
        headers = {"content-type": "application/json"}
        if settings.llm_api_key is not None:
            headers["authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
        self._http = httpx.Client(base_url=settings.llm_base_url.rstrip("/") + "/", headers=headers)

    def complete(
        self,
        messages: list[Message],
        *,
        task: str | None = None,
        json_schema: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Completion:
        conversation = [m.model_dump() for m in messages]
        waited = prompt_tokens = completion_tokens = cached_tokens = 0.0
        started = time.perf_counter()
        for repair in range(self.settings.llm_repair_attempts + 1):
            if self.limiter is not None:
                # Reserve the prompt and the most the answer may take; waiting is not work.
                reserve = sum(count_tokens(m["content"]) for m in conversation) + self.settings.llm_max_tokens
                waited += self.limiter.acquire(tokens=reserve)
            body = self._request(conversation, task, json_schema, on_token)
            text, usage = _answer(body, self.provider)
            prompt_tokens += usage.get("prompt_tokens") or sum(count_tokens(m["content"]) for m in conversation)
            completion_tokens += usage.get("completion_tokens") or count_tokens(text)
            cached_tokens += usage.get("cached_tokens", 0)
            problem = _structure_problem(text, json_schema) if json_schema is not None else None
            if problem is None:
                return Completion(
                    text=text,
                    model=self.name,
                    prompt_tokens=int(prompt_tokens),
                    completion_tokens=int(completion_tokens),
                    cached_tokens=int(cached_tokens),
                    latency_s=time.perf_counter() - started - waited,
                    rate_limit_wait_s=waited,
                )
            if repair == self.settings.llm_repair_attempts:
                raise PermanentModelError(self.provider, f"structured answer still invalid after repair: {problem}")
            conversation += [
                {"role": "assistant", "content": text},
                {
                    "role": "user",
                    "content": f"That answer is not valid: {problem}. Reply with only JSON for the schema.",
                },
            ]
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the HTTP connection pool (the process-wide cached model never needs to)."""
        self._http.close()

    def _request(
        self,
        conversation: list[dict[str, Any]],
        task: str | None,
        schema: dict[str, Any] | None,
        on_token: Callable[[str], None] | None = None,
    ) -> Any:
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": conversation,
            "temperature": self.settings.llm_temperature,
            "max_tokens": self.settings.llm_max_tokens,
        }
        if schema is not None and self.settings.llm_json_mode == "schema":
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": task or "answer", "schema": schema},
            }
        elif schema is not None and self.settings.llm_json_mode == "object":
            payload["response_format"] = {"type": "json_object"}
        if on_token is not None:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        try:
            if on_token is not None:
                return self._streamed(payload, on_token)
            response = self._http.post("chat/completions", json=payload, timeout=self.settings.llm_timeout_s)
        except httpx.TimeoutException as exc:
            raise TransientModelError(self.provider, f"timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise TransientModelError(self.provider, f"connection failed: {type(exc).__name__}") from None
        self._check_status(response)
        try:
            return response.json()
        except json.JSONDecodeError:
            raise TransientModelError(self.provider, "the response body is not JSON") from None

    def _check_status(self, response: httpx.Response) -> None:
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = _retry_after_s(response.headers.get("retry-after"))
            raise TransientModelError(self.provider, f"HTTP {response.status_code}", retry_after)
        if response.status_code >= 400:
            raise PermanentModelError(self.provider, f"HTTP {response.status_code}: {response.text[:300]}")

    def _streamed(self, payload: dict[str, Any], on_token: Callable[[str], None]) -> dict[str, Any]:
        """A streamed answer (Server-Sent Events of chunks): each content delta goes to
        ``on_token`` as it arrives; returns the whole answer shaped like a non-streamed one."""
        pieces: list[str] = []
        usage: dict[str, Any] = {}
        with self._http.stream("POST", "chat/completions", json=payload, timeout=self.settings.llm_timeout_s) as reply:
            if reply.status_code >= 400:
                reply.read()
                self._check_status(reply)
            for line in reply.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    raise TransientModelError(self.provider, "a streamed chunk is not JSON") from None
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        pieces.append(delta)
                        on_token(delta)
                if chunk.get("usage"):
                    usage = chunk["usage"]
        return {"choices": [{"message": {"content": "".join(pieces)}}], "usage": usage}


def _answer(body: Any, provider: str) -> tuple[str, dict[str, int]]:
    try:
        text = body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise PermanentModelError(provider, "the response has no choices[0].message.content") from None
    usage = body.get("usage") or {} if isinstance(body, dict) else {}
    counts = {k: int(v) for k, v in usage.items() if isinstance(v, int)} if isinstance(usage, dict) else {}
    # OpenAI and compatible servers report prefix-cache hits inside prompt_tokens_details.
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        counts["cached_tokens"] = int(details["cached_tokens"])
    return str(text), counts


def _structure_problem(text: str, schema: dict[str, Any]) -> str | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at char {exc.pos})"
    error = next(iter(validator_for(schema)(schema).iter_errors(value)), None)
    return None if error is None else f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"


def _retry_after_s(header: str | None) -> float:
    try:
        return max(float(header), 0.0) if header else 0.0
    except ValueError:
        return 0.0  # an HTTP date; the retry policy's backoff applies instead


def build(settings: Settings, model: str) -> OpenAICompatibleModel:
    limiter = None
    if settings.llm_requests_per_minute or settings.llm_tokens_per_minute:
        from proj.registry import registry_for

        registry = registry_for(settings)
        provider = url_host(settings.llm_base_url)
        limit = RateLimit(settings.llm_requests_per_minute, settings.llm_tokens_per_minute, settings.llm_rate_window_s)
        limiter = RateLimiter(registry.client, registry.keys.rate_limit(provider, model), limit)
    return OpenAICompatibleModel(settings, model, limiter)
