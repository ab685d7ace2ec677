"""A local server that speaks the OpenAI chat-completions API, for the backend's tests.

Markers in the last user message script its behaviour: ``[[429 ID]]`` (429 with Retry-After: 1
on the first request for ID), ``[[500 ID]]``, ``[[malformed ID]]`` (one non-JSON answer, then a
good one), ``[[malformed-always]]``, ``[[slow]]`` (2 s), ``[[400]]``, ``[[no-usage]]``. Answers
for a task come from the offline model's skills, so roles get realistic structured output.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

import agents  # noqa: F401  (registers the offline skills the answers come from)
from agents.llm import Message
from agents.offline import OfflineModel
from proj.redis_server import free_port

API_KEY = "fake-key-123"


USAGE = {
    "prompt_tokens": 123,
    "completion_tokens": 45,
    "total_tokens": 168,
    # As OpenAI reports prefix-cache hits.
    "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
}


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
            return self._answer(body)

        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)

    def _first(self, marker: str) -> bool:
        with self._lock:
            self.seen[marker] = self.seen.get(marker, 0) + 1
            return self.seen[marker] == 1

    def _answer(self, body: dict[str, Any]) -> Response:
        last = body["messages"][-1]["content"]
        # Markers are read from the caller's own prompt (every message before a repair round).
        first_user = "\n".join(
            m["content"] for m in itertools.takewhile(lambda m: m["role"] != "assistant", body["messages"])
        )
        for kind, ident in re.findall(r"\[\[(429|500|malformed) (\w+)\]\]", first_user):
            if kind in ("429", "500") and self._first(f"{kind}:{ident}"):
                return JSONResponse({"error": {"message": "busy"}}, status_code=int(kind), headers={"retry-after": "1"})
            if kind == "malformed" and self._first(f"malformed:{ident}"):
                return self._completion(body, "this is not json {", usage=True)
        if "[[400]]" in first_user:
            return JSONResponse({"error": {"message": "bad request"}}, status_code=400)
        if "[[slow]]" in first_user:
            time.sleep(2)
        if "[[malformed-always]]" in first_user:
            return self._completion(body, "still not json", usage=True)
        task = (body.get("response_format") or {}).get("json_schema", {}).get("name")
        # The caller's own messages: those before a repair round (an assistant answer) began.
        head = itertools.takewhile(lambda m: m["role"] != "assistant", body["messages"])
        messages = [Message(role=m["role"], content=m["content"]) for m in head]
        answer = OfflineModel().complete(messages, task=task).text
        del last
        return self._completion(body, answer, usage="[[no-usage]]" not in first_user)

    def _completion(self, body: dict[str, Any], text: str, usage: bool) -> Response:
        if body.get("stream"):
            return self._streamed(body, text, usage)
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if usage:
            payload["usage"] = USAGE
        return JSONResponse(payload)

    def _streamed(self, body: dict[str, Any], text: str, usage: bool) -> StreamingResponse:
        """As OpenAI streams (``stream: true``): content deltas, then (``include_usage``) a last
        chunk with no choices and the usage, then ``[DONE]``."""
        pieces = [text[i : i + 12] for i in range(0, len(text), 12)]

        def chunk(fields: dict[str, Any]) -> str:
            return "data: " + json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                          "model": body["model"], **fields}) + "\n\n"  # fmt: skip

        events = [chunk({"choices": [{"index": 0, "delta": {"content": piece}}]}) for piece in pieces]
        if usage and (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk({"choices": [], "usage": USAGE}))
        events.append("data: [DONE]\n\n")
        return StreamingResponse(iter(events), media_type="text/event-stream")

    def about(self, marker: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if marker in json.dumps(r["body"])]

    def start(self) -> FakeOpenAI:
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
