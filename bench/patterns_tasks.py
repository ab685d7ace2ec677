"""The handoff-record variant of the code-review roles for bench/patterns.py.

Each ``handoff_*`` role does its built-in role's work (same system prompt, output model and
offline skill, so the same answers) with a prompt built from the run's handoff record plus the
outputs of its declared dependencies only.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from agents import StepContext, agent, doc_generator, merger, reviewer, test_writer
from agents.llm import Message

M = TypeVar("M", bound=BaseModel)


def ask(ctx: StepContext, task: str, system: str, output: type[M], fields: dict[str, Any]) -> M:
    prompt = ctx.json_prompt(
        {**fields, **ctx.dependencies, "handoff": ctx.handoff.as_prompt() if ctx.handoff else ""},
        inject=(*ctx.dependencies, "handoff"),
    )
    reply = ctx.model.complete(
        [Message.system(system), Message.user(prompt)], task=task, json_schema=output.model_json_schema()
    )
    return output.model_validate_json(reply.text)


@agent("handoff_reviewer")
def handoff_reviewer(ctx: StepContext) -> reviewer.ReviewOutput:
    return reviewer.review(ctx)  # the first step: nothing handed over yet


@agent("handoff_test_writer")
def handoff_test_writer(ctx: StepContext) -> test_writer.TestsOutput:
    return ask(ctx, "test_writer", test_writer.PROMPT, test_writer.TestsOutput, {"diff": ctx.input.get("diff", "")})


@agent("handoff_doc_generator")
def handoff_doc_generator(ctx: StepContext) -> doc_generator.DocsOutput:
    return ask(
        ctx, "doc_generator", doc_generator.PROMPT, doc_generator.DocsOutput, {"diff": ctx.input.get("diff", "")}
    )


@agent("handoff_merger")
def handoff_merger(ctx: StepContext) -> merger.MergeOutput:
    return ask(ctx, "merger", merger.PROMPT, merger.MergeOutput, {})
