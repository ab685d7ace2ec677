"""Agent roles used by the tests, loaded by workers through AGENTCHORD_AGENT_MODULES.

Each reports what it saw, so tests can check context filtering and timing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from agents import Message, StepContext, agent


@agent("echo")
def echo(ctx: StepContext) -> dict[str, Any]:
    """Report the dependencies and input keys it was given; sleep ``params.sleep_s`` first."""
    time.sleep(float(ctx.params.get("sleep_s", 0)))  # simulated work, on purpose
    return {"step": ctx.step, "saw": sorted(ctx.dependencies), "input_keys": sorted(ctx.input)}


@agent("summarizer")
def summarize(ctx: StepContext) -> dict[str, Any]:
    """A user-defined role, as a user would write one."""
    reply = ctx.model.complete([Message.user(str(ctx.input.get("text", "")))], task="summarizer")
    return {"summary": json.loads(reply.text)["summary"], "tokens": reply.prompt_tokens}


@agent("boom")
def boom(ctx: StepContext) -> dict[str, Any]:
    """Always fails."""
    raise ValueError(f"boom in {ctx.step}")
