"""What a step saw, as one hash: the key under which a rerun may reuse its stored output.

A step's output is reused by a rerun only when everything that could change it is the same:
the workflow input, the dependencies' outputs as the step sees them (after ``uses``), its params,
the role's name, version and prompt, and the run's handoff record when the workflow keeps one.
A changed prompt, input or role version therefore never gets a stale output.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agents.role import AgentRole


def step_input_hash(
    agent: str,
    role: AgentRole | None,
    params: dict[str, Any],
    input: dict[str, Any],
    dependencies: dict[str, Any],
    handoff: dict[str, Any] | None = None,
) -> str:
    """The hash of what a step of ``agent`` saw (``role``: that role as registered here, None if
    it is not: then no stored output can match)."""
    payload = {
        "agent": agent,
        "version": role.version if role else None,
        "prompt": role.prompt if role else None,
        "params": params,
        "input": input,
        "dependencies": dependencies,
        "handoff": handoff,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
