"""The validator role: PASS/FAIL critique of the outputs it depends on (never a regeneration).

Step params: ``required`` (keys each checked output must have, non-empty) and
``min_confidence`` (checked where an output reports ``confidence``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from agents.base import agent
from agents.context import StepContext
from agents.llm import Message
from agents.offline import offline_skill, prompt_context

PROMPT = "Check each output against the criteria. Answer PASS or FAIL with the concrete issues."


class ValidationOutput(BaseModel):
    verdict: Literal["PASS", "FAIL"]
    issues: list[str]


@offline_skill("validator")
def validate_offline(messages: list[Message]) -> ValidationOutput:
    context = prompt_context(messages)
    required: list[str] = context.get("required", [])
    min_confidence = float(context.get("min_confidence", 0.0))
    issues: list[str] = []
    outputs: dict[str, Any] = context.get("outputs", {})
    for step, output in sorted(outputs.items()):
        if not isinstance(output, dict):
            issues.append(f"{step}: output is not an object")
            continue
        issues += [f"{step}: missing or empty {key!r}" for key in required if not output.get(key)]
        confidence = output.get("confidence")
        if isinstance(confidence, int | float) and confidence < min_confidence:
            issues.append(f"{step}: confidence {confidence} below {min_confidence}")
    return ValidationOutput(verdict="FAIL" if issues else "PASS", issues=issues)


@agent("validator", prompt=PROMPT)
def validate(ctx: StepContext) -> ValidationOutput:
    """Validate the outputs of the steps this one depends on."""
    context = {
        "outputs": ctx.dependencies,
        "required": ctx.params.get("required", []),
        "min_confidence": ctx.params.get("min_confidence", 0.0),
    }
    reply = ctx.model.complete(
        ctx.prompt(PROMPT, context, inject=("outputs",)),
        task="validator",
        json_schema=ValidationOutput.model_json_schema(),
    )
    return ValidationOutput.model_validate_json(reply.text)
