"""The doc_generator role: Markdown reference for the functions a diff adds."""

from __future__ import annotations

from pydantic import BaseModel

from agents.base import agent
from agents.context import StepContext
from agents.diffs import added_functions
from agents.llm import Message
from agents.offline import offline_skill, prompt_context

PROMPT = "You document the functions a diff adds, in Markdown, one section per function."


class DocsOutput(BaseModel):
    markdown: str
    documented: list[str]
    undocumented: list[str]


@offline_skill("doc_generator")
def document_offline(messages: list[Message]) -> DocsOutput:
    functions = added_functions(str(prompt_context(messages).get("diff", "")))
    sections = []
    for fn in functions:
        summary = fn.doc or "(no docstring: describe what it does)"
        sections.append(f"### `{fn.name}({', '.join(fn.params)})`\n\n{summary}\n")
    return DocsOutput(
        markdown="\n".join(sections) or "_No new functions._\n",
        documented=[fn.name for fn in functions if fn.doc],
        undocumented=[fn.name for fn in functions if not fn.doc],
    )


@agent("doc_generator", prompt=PROMPT)
def generate_docs(ctx: StepContext) -> DocsOutput:
    """Docs for ``input.diff``."""
    reply = ctx.model.complete(
        ctx.prompt(PROMPT),  # the diff is the run's input: in the shared context
        task="doc_generator",
        json_schema=DocsOutput.model_json_schema(),
    )
    return DocsOutput.model_validate_json(reply.text)
