"""The "central brain" baseline of bench/tokens.py: the code-review roles, each shown the whole run.

Each ``brain_*`` role does its built-in role's work (the same system prompt, output model and
offline skill, so the answers are the same) but its prompt carries the workflow input and the
output of every step it depends on, and the baseline workflow makes each step depend on all
earlier ones. Every output goes in through ``StepContext.json_prompt(..., inject=...)``, so
the tokens it costs are counted as re-injected, exactly as the built-in roles count theirs.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from agents import StepContext, agent, doc_generator, merger, reviewer, test_writer
from agents.llm import Message

M = TypeVar("M", bound=BaseModel)


def whole_context(ctx: StepContext) -> str:
    """The input and every dependency's output, keyed by step name, as one JSON prompt."""
    fields: dict[str, Any] = {"diff": ctx.input.get("diff", ""), **ctx.dependencies}
    return ctx.json_prompt(fields, inject=tuple(ctx.dependencies))


def ask(ctx: StepContext, task: str, system: str, output: type[M]) -> M:
    reply = ctx.model.complete(
        [Message.system(system), Message.user(whole_context(ctx))],
        task=task,
        json_schema=output.model_json_schema(),
    )
    return output.model_validate_json(reply.text)


@agent("brain_reviewer")
def brain_reviewer(ctx: StepContext) -> reviewer.ReviewOutput:
    # The first step: the whole run's context is the input, which the reviewer reads as is.
    if not ctx.dependencies:
        return reviewer.review(ctx)
    return ask(ctx, "reviewer", reviewer.PROMPT, reviewer.ReviewOutput)


@agent("brain_test_writer")
def brain_test_writer(ctx: StepContext) -> test_writer.TestsOutput:
    return ask(ctx, "test_writer", test_writer.PROMPT, test_writer.TestsOutput)


@agent("brain_doc_generator")
def brain_doc_generator(ctx: StepContext) -> doc_generator.DocsOutput:
    return ask(ctx, "doc_generator", doc_generator.PROMPT, doc_generator.DocsOutput)


@agent("brain_merger")
def brain_merger(ctx: StepContext) -> merger.MergeOutput:
    return ask(ctx, "merger", merger.PROMPT, merger.MergeOutput)
