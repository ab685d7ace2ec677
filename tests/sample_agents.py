"""Agent roles used by the tests, loaded by workers through AGENTCHORD_AGENT_MODULES.

Each reports what it saw, so tests can check context filtering and timing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from agents import Message, RejectedApproach, StepContext, agent
from agents.offline import offline_skill
from agents.runtime import AFTER_STORE_HOOKS
from proj.errors import TransientError


@agent("echo")
def echo(ctx: StepContext) -> dict[str, Any]:
    """Report the dependencies and input keys it was given; sleep ``params.sleep_s`` first."""
    time.sleep(float(ctx.params.get("sleep_s", 0)))  # simulated work, on purpose
    return {"step": ctx.step, "saw": sorted(ctx.dependencies), "input_keys": sorted(ctx.input)}


@agent("lister")
def lister(ctx: StepContext) -> dict[str, Any]:
    """A planner: the list to map over is the input's ``files`` (whatever it is)."""
    return {"files": ctx.input.get("files"), "count": len(ctx.input.get("files") or [])}


@agent("per_item")
def per_item(ctx: StepContext) -> dict[str, Any]:
    """One map member: reports its item and index; an item ``"bad"`` fails for good."""
    if ctx.item == "bad":
        raise ValueError(f"cannot review item {ctx.index}")
    time.sleep(float(ctx.params.get("sleep_s", 0)))  # simulated work, on purpose
    return {"item": ctx.item, "index": ctx.index}


@agent("collector")
def collector(ctx: StepContext) -> dict[str, Any]:
    """After a map: returns the dependencies exactly as it saw them."""
    return {"got": ctx.dependencies}


@agent("inspector")
def inspector(ctx: StepContext) -> dict[str, Any]:
    """Report the fields of each dependency's output it was given."""
    return {name: sorted(output) if isinstance(output, dict) else None for name, output in ctx.dependencies.items()}


@agent("streamer")
def streamer(ctx: StepContext) -> dict[str, Any]:
    """Reports progress, then asks the model (which streams its answer when asked to), then waits
    for ``params.path`` to exist: a test sees everything it streamed while the step still runs."""
    ctx.emit("reading the input")
    reply = ctx.model.complete([Message.user(" ".join(["token"] * 40))], task="streamed")
    ctx.emit("answer received")
    deadline = time.monotonic() + 30
    while not Path(ctx.params["path"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # held open by the test, on purpose
    return {"words": len(reply.text.split())}


@agent("summarizer")
def summarize(ctx: StepContext) -> dict[str, Any]:
    """A user-defined role, as a user would write one."""
    reply = ctx.model.complete([Message.user(str(ctx.input.get("text", "")))], task="summarizer")
    return {"summary": json.loads(reply.text)["summary"], "tokens": reply.prompt_tokens}


@agent("boom")
def boom(ctx: StepContext) -> dict[str, Any]:
    """Always fails."""
    raise ValueError(f"boom in {ctx.step}")


@agent("broken_until_fixed")
def broken_until_fixed(ctx: StepContext) -> dict[str, Any]:
    """Fails (not transiently) until the file ``params.path`` exists: an operator's fix."""
    if not Path(ctx.params["path"]).exists():
        raise ValueError(f"{ctx.step} is broken until {ctx.params['path']} exists")
    return {"fixed": True}


@agent("flaky")
def flaky(ctx: StepContext) -> dict[str, Any]:
    """Fails with a transient error on its first ``params.fail_times`` attempts."""
    if ctx.attempt <= int(ctx.params.get("fail_times", 0)):
        raise TransientError(f"provider busy (attempt {ctx.attempt})")
    return {"attempt": ctx.attempt}


@agent("poison")
def poison(ctx: StepContext) -> dict[str, Any]:
    """Kills the worker process that runs it, every time."""
    os._exit(1)


@agent("stubborn")
def stubborn(ctx: StepContext) -> dict[str, Any]:
    """Ignores its soft time limit, so only the hard one stops it."""
    deadline = time.monotonic() + float(ctx.params.get("sleep_s", 30))
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue
    return {}


def _crash_after_store(ctx: StepContext) -> None:
    """Fault injection: die after the result is stored, before the next hop is sent."""
    if ctx.params.get("crash_after_store") and ctx.attempt == 1:
        os._exit(1)


AFTER_STORE_HOOKS.append(_crash_after_store)


@agent("accountant")
def accountant(ctx: StepContext) -> dict[str, Any]:
    """Known work for the accounting test: sleeps ``sleep_s``, puts the outputs of the
    dependencies named in ``inject`` into one prompt each, returns ``words`` words."""
    time.sleep(float(ctx.params.get("sleep_s", 0)))  # simulated work, on purpose
    for dep in ctx.params.get("inject", []):
        ctx.model.complete([Message.user(ctx.inject(ctx.dependencies[dep]))], task="accountant")
    return {"text": " ".join(f"w{i}" for i in range(int(ctx.params.get("words", 0))))}


@agent("reviewer_llm")
def reviewer_llm(ctx: StepContext) -> Any:
    """The built-in reviewer, on the OpenAI-compatible backend (AGENTCHORD_ROLE_BACKENDS)."""
    from agents.reviewer import review

    return review(ctx)


@agent("hypothesizer")
def hypothesizer(ctx: StepContext) -> dict[str, Any]:
    """Extends the handoff record: a hypothesis, a rejected approach, a next action."""
    ctx.update_handoff(
        hypothesis="the cache key omits the tenant",
        confidence=0.7,
        next_action="write a failing test",
        rejected=[RejectedApproach(approach="raise the TTL", why="hides the bug")],
    )
    return {"summary": "found a likely cause"}


@agent("handoff_reader")
def handoff_reader(ctx: StepContext) -> dict[str, Any]:
    """Reports the handoff record it was given and puts it in a prompt."""
    ctx.model.complete([Message.user(ctx.handoff_prompt())], task="handoff_reader")
    record = ctx.handoff
    return {
        "summary": f"read by {ctx.step}",
        "completed": [o.step for o in record.steps_completed] if record else None,
        "hypothesis": record.hypothesis if record else None,
    }


@agent("drafter")
def drafter(ctx: StepContext) -> dict[str, Any]:
    """A generator that reports its confidence and fixes its draft when given a critique
    (unless ``params.stubborn``)."""
    if ctx.feedback and not ctx.params.get("stubborn"):
        return {"text": f"fixed after: {'; '.join(ctx.feedback)}", "confidence": 0.6}
    return {"text": "", "confidence": float(ctx.params.get("confidence", 0.5))}


@agent("router_llm")
def router_llm(ctx: StepContext) -> Any:
    """The built-in router, on the OpenAI-compatible backend."""
    from agents.router import route

    return route(ctx)


@offline_skill("verbose")
def _verbose(messages: list[Message]) -> str:
    # Longer than any completion estimate the tests use: actual cost above the reserved estimate.
    return " ".join(["long"] * 1500)


@agent("spender")
def spender(ctx: StepContext) -> dict[str, Any]:
    """Makes ``calls`` model calls of ``words`` prompt words each (``task``: the offline skill),
    ``pause_s`` apart, for the budget tests."""
    made = 0
    for _ in range(int(ctx.params.get("calls", 1))):
        prompt = " ".join(["word"] * int(ctx.params.get("words", 10)))
        ctx.model.complete([Message.user(prompt)], task=str(ctx.params.get("task", "spender")))
        made += 1
        time.sleep(float(ctx.params.get("pause_s", 0)))  # simulated work between calls, on purpose
    return {"calls": made}
