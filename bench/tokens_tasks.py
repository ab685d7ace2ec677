"""The "central brain" baseline of bench/tokens.py: the code-review roles, each shown the whole run.

Each ``brain_*`` role does its built-in role's work (the same system prompt, output model and
offline skill, so the answers are the same) but its prompt carries the workflow input and the
output of every step it depends on, and the baseline workflow makes each step depend on all
earlier ones. Every output goes in through ``StepContext.json_prompt(..., inject=...)``, so
the tokens it costs are counted as re-injected, exactly as the built-in roles count theirs.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel

from agents import StepContext, agent, doc_generator, merger, reviewer, test_writer
from agents.llm import Message
from agents.offline import offline_skill, prompt_context

M = TypeVar("M", bound=BaseModel)


def whole_context(ctx: StepContext) -> str:
    """The whole input and every dependency's output, keyed by step name, as one JSON prompt."""
    fields: dict[str, Any] = {**ctx.input, **ctx.dependencies}
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


# --- The generic roles of the 8-agent pipeline and the planner workflow --------------------------
#
# One role, ``bench_agent``, whose ``params`` say what it does (``kind``), which part of the
# document it works on (``section``) and which fields of which dependencies it reads (``reads``).
# Its offline skill computes its answer from exactly those fields, so the answer is the same
# whether the step was shown whole outputs, only the fields it uses, or every earlier output (the
# broadcast): only what the prompt carries, and so costs, differs.

INSTRUCTIONS = {
    "outline": "You outline a long document: its topic and its main points.",
    "section": "You analyse one section of the document against its outline.",
    "critique": "You critique the section analyses: what is weak, what is missing.",
    "summary": "You summarise the analyses and the critique for a reader in a hurry.",
    "final": "You write the final verdict on the document.",
    "planner": "You split the request into independent tasks for workers.",
    "worker": "You carry out one task of the plan.",
    "aggregate": "You combine the workers' results into one report.",
}


class Work(BaseModel):
    title: str
    points: list[str]
    detail: str  # the long part: what field-level context saves downstream steps from
    score: int


def _sections(document: str) -> list[str]:
    return [part.strip() for part in document.split("\n\n") if part.strip()]


@offline_skill("bench_agent")
def bench_agent_offline(messages: list[Message]) -> Work:
    context = prompt_context(messages)
    task, deps = context["task"], context.get("deps", {})
    sections = _sections(str(context.get("document", "")))
    section = task.get("section")
    text = sections[section % len(sections)] if section is not None and sections else " ".join(sections)
    words = text.split()
    read = [
        (dep, field, deps[dep][field])
        for dep, fields in sorted(task.get("reads", {}).items())
        for field in fields
        if isinstance(deps.get(dep), dict) and field in deps[dep]
    ]
    points = [" ".join(sentence.split()[:6]) for sentence in text.split(".")[:3] if sentence.strip()]
    points += [f"{dep}.{field}: {json.dumps(value, sort_keys=True)[:40]}" for dep, field, value in read]
    score = len(words) + sum(value for _, field, value in read if field == "score" and isinstance(value, int))
    return Work(
        title=f"{task['kind']} {'' if section is None else section}".strip(), points=points, detail=text, score=score
    )


@agent("bench_agent")
def bench_agent(ctx: StepContext) -> Work:
    task = {k: ctx.params[k] for k in ("kind", "section", "reads") if k in ctx.params}
    # A central brain leads with its instruction and re-sends everything after it; the pipelines
    # built on agentchord shape the prompt for the prefix cache (StepContext.prompt).
    reply = ctx.model.complete(
        ctx.prompt(
            INSTRUCTIONS[task["kind"]],
            {"task": task, "deps": ctx.dependencies},
            inject=("deps",),
            instructions_first=bool(ctx.params.get("broadcast")),
        ),
        task="bench_agent",
        json_schema=Work.model_json_schema(),
    )
    return Work.model_validate_json(reply.text)
