"""The merger role: decides merge or request-changes from the tests and docs it depends on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from agents.base import agent
from agents.context import StepContext
from agents.llm import Message
from agents.offline import offline_skill, prompt_context

PROMPT = "You decide whether a change can merge, given its tests and docs. Answer JSON."


class MergeOutput(BaseModel):
    decision: Literal["merge", "request_changes"]
    reasons: list[str]
    summary: str


@offline_skill("merger")
def merge_offline(messages: list[Message]) -> MergeOutput:
    context = prompt_context(messages)
    tests = context.get("tests", {})
    docs = context.get("docs", {})
    reasons = [f"blocking: {item}" for item in tests.get("blocking", [])]
    reasons += [f"undocumented: {name}" for name in docs.get("undocumented", [])]
    blocked = bool(tests.get("blocking"))
    written = tests.get("count", len(tests.get("tests", [])))
    summary = (
        f"{written} test(s) written, {len(docs.get('documented', []))} function(s) "
        f"documented; {'changes requested' if blocked else 'ready to merge'}"
    )
    return MergeOutput(decision="request_changes" if blocked else "merge", reasons=reasons, summary=summary)


@agent("merger", prompt=PROMPT)
def merge(ctx: StepContext) -> MergeOutput:
    """Merge decision over the outputs of the steps this one depends on."""
    # Find the tests and docs among the dependencies by shape, whatever the steps are called.
    outputs = list(ctx.dependencies.values())
    context = {
        "tests": next((o for o in outputs if isinstance(o, dict) and "blocking" in o), {}),
        "docs": next((o for o in outputs if isinstance(o, dict) and "documented" in o), {}),
    }
    reply = ctx.model.complete(
        ctx.prompt(PROMPT, context, inject=("tests", "docs")),
        task="merger",
        json_schema=MergeOutput.model_json_schema(),
    )
    return MergeOutput.model_validate_json(reply.text)
