"""The router role: classifies the input into one of the routes its step declares.

Step params: ``routes: {name: [keyword, ...]}`` and optional ``default``. The answer carries a
one-line hint for the chosen worker, never a paraphrase of the input.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, Field

from agents.base import agent
from agents.context import StepContext
from agents.llm import Message
from agents.offline import offline_skill, prompt_context

PROMPT = "Classify the request into exactly one of the given routes. Answer JSON."


class RouteOutput(BaseModel):
    route: str
    confidence: float = Field(ge=0, le=1)
    hint: str


@offline_skill("router")
def route_offline(messages: list[Message]) -> RouteOutput:
    context = prompt_context(messages)
    words = re.findall(r"[a-z0-9_]+", str(context.get("text", "")).lower())
    routes: dict[str, list[str]] = context.get("routes", {})
    scores = {name: sum(words.count(k.lower()) for k in keywords) for name, keywords in routes.items()}
    total = sum(scores.values())
    if total == 0:
        default = context.get("default") or next(iter(routes), "default")
        return RouteOutput(route=default, confidence=0.0, hint="no route keyword matched")
    best = max(sorted(scores), key=lambda name: scores[name])
    return RouteOutput(
        route=best, confidence=round(scores[best] / total, 3), hint=f"matched {scores[best]} keyword(s) of {best!r}"
    )


@agent("router", prompt=PROMPT)
def route(ctx: StepContext) -> RouteOutput:
    """Route ``input.text`` (or the whole input) to one of ``params.routes``."""
    context = {"routes": ctx.params.get("routes", {}), "default": ctx.params.get("default")}
    if not ctx.input.get("text"):  # otherwise the input's text is in the shared context
        context["text"] = json.dumps(ctx.input)
    reply = ctx.model.complete(
        ctx.prompt(PROMPT, context),
        task="router",
        json_schema=RouteOutput.model_json_schema(),
    )
    return RouteOutput.model_validate_json(reply.text)
