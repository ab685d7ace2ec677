"""The handoff record: what a run has established so far, typed, kept in the registry.

Agents read it (``ctx.handoff``) and extend it (``ctx.update_handoff(...)``); every finished
step is appended to ``steps_completed`` automatically. Prompts can carry the record instead of
whole outputs (``ctx.handoff_prompt()``): a compact, structured hand-over between agents.
Enabled per workflow (``Workflow(handoff=True)``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, field_validator


class StepOutcome(BaseModel):
    step: str
    agent: str
    outcome: str


class RejectedApproach(BaseModel):
    approach: str
    why: str


class HandoffRecord(BaseModel):
    original_request: str = ""
    steps_completed: list[StepOutcome] = Field(default_factory=list)
    rejected_approaches: list[RejectedApproach] = Field(default_factory=list)
    hypothesis: str = ""
    confidence: float | None = Field(default=None, ge=0, le=1)
    next_action: str = ""
    constraints: list[str] = Field(default_factory=list)

    @field_validator("steps_completed", "rejected_approaches", "constraints", mode="before")
    @classmethod
    def _empty_list(cls, value: Any) -> Any:
        # Redis' Lua cjson encodes an empty list as {} after the merge script touched it.
        return [] if value == {} else value

    @classmethod
    def for_input(cls, value: dict[str, Any]) -> HandoffRecord:
        """The record a run starts with: the request as given, and its constraints."""
        request = value.get("request") or value.get("text") or json.dumps(value)
        constraints = value.get("constraints") or []
        return cls(original_request=str(request)[:4000], constraints=[str(c) for c in constraints])

    def as_prompt(self) -> str:
        """Compact text for a prompt."""
        lines = [f"Request: {self.original_request}"]
        lines += [f"Done: {o.step} ({o.agent}): {o.outcome}" for o in self.steps_completed]
        lines += [f"Rejected: {r.approach} because {r.why}" for r in self.rejected_approaches]
        if self.hypothesis:
            confidence = "" if self.confidence is None else f" (confidence {self.confidence:.2f})"
            lines.append(f"Hypothesis: {self.hypothesis}{confidence}")
        if self.next_action:
            lines.append(f"Next: {self.next_action}")
        lines += [f"Constraint: {c}" for c in self.constraints]
        return "\n".join(lines)


def outcome_of(output: Any) -> str:
    """A one-line outcome of a step's output for ``steps_completed``."""
    if isinstance(output, dict):
        for key in ("summary", "decision", "verdict", "route"):
            if isinstance(output.get(key), str):
                return str(output[key])[:200]
    return json.dumps(output, sort_keys=True, default=str)[:200]
