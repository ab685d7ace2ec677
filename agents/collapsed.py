"""Single-model collapse: a whole workflow as one model call with a combined prompt.

``start(workflow, input, collapse=True)`` (or ``agentchord run WORKFLOW --collapse``) runs the
``collapsed`` role instead of the DAG: one prompt that lists every step's instructions, one
answer with every step's output. Users measure the orchestration tax of their own workflow
against this single-model baseline (``agentchord run ... --compare`` shows both side by side).
"""

from __future__ import annotations

import json
from graphlib import TopologicalSorter
from typing import Any

from agents.base import agent, get_role
from agents.context import StepContext
from agents.llm import Message
from agents.offline import OfflineModel, last_user_json, offline_skill

PROMPT = (
    "You carry out a whole workflow in one answer. For each step, in order, do what its instructions "
    "say, using the input and the outputs of the steps it depends on. Answer one JSON object with one "
    "key per step."
)


def combined_prompt(steps: list[dict[str, Any]]) -> str:
    lines = [PROMPT, ""]
    for step in steps:
        role = get_role(step["agent"])
        after = f" (uses: {', '.join(step['after'])})" if step["after"] else ""
        lines.append(f"- {step['name']}{after}: {role.prompt if role else step['agent']}")
    return "\n".join(lines)


@offline_skill("collapsed")
def collapsed_offline(messages: list[Message]) -> dict[str, Any]:
    """Deterministic stand-in: runs each step's role over the offline model, in order."""
    context = last_user_json(messages)
    steps = {s["name"]: s for s in context["steps"]}
    outputs: dict[str, Any] = {}
    for name in TopologicalSorter({n: s["after"] for n, s in steps.items()}).static_order():
        role = get_role(steps[name]["agent"])
        if role is None:
            continue
        ctx = StepContext(
            run_id="collapsed",
            step=name,
            agent=role.name,
            input=context["input"],
            dependencies={dep: outputs[dep] for dep in steps[name]["after"] if dep in outputs},
            params=steps[name].get("params", {}),
        ).with_model(OfflineModel())
        result = role.function(ctx)
        outputs[name] = result.model_dump() if hasattr(result, "model_dump") else result
    return outputs


@agent("collapsed", prompt=PROMPT)
def collapsed(ctx: StepContext) -> dict[str, Any]:
    """The workflow in ``params.steps`` as a single model call."""
    steps = ctx.params["steps"]
    user = json.dumps({"input": ctx.input, "steps": steps})
    reply = ctx.model.complete([Message.system(combined_prompt(steps)), Message.user(user)], task="collapsed")
    answer = json.loads(reply.text)
    return answer if isinstance(answer, dict) else {"answer": answer}
