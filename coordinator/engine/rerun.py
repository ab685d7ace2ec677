"""Rerun from a step: which stored outputs of the original run a rerun may reuse.

Pure: no I/O. A step is reused (no model call) only when it is not ``from_step`` nor after it,
every step it depends on is reused too, it succeeded in the original run, and the hash of what
it would see now (agents/reuse.py: input, dependencies' outputs, params, role name, version and
prompt) equals the hash recorded when it ran. Anything else runs again, and so does everything
after it. Gates, routers, map steps and validated steps always run again (their outcome is a decision or a
loop, not an output of what they saw).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from graphlib import TopologicalSorter
from typing import Any

from agents.reuse import step_input_hash
from agents.role import AgentRole
from agents.runtime import used_fields
from proj.plan import RunPlan
from proj.registry import ReusedOutput


def downstream(plan: RunPlan, step: str) -> set[str]:
    """``step`` and every step that depends on it, directly or not."""
    found, frontier = {step}, [step]
    while frontier:
        current = frontier.pop()
        for name, other in plan.items():
            if current in other.after and name not in found:
                found.add(name)
                frontier.append(name)
    return found


def reusable_outputs(
    plan: RunPlan,
    from_step: str,
    records: dict[str, dict[str, str]],
    results: dict[str, str],
    input: dict[str, Any],
    role_of: Callable[[str], AgentRole | None],
    keeps_handoff: bool = False,
) -> dict[str, ReusedOutput]:
    """The outputs of the original run (its step ``records`` and raw ``results``) that a rerun
    of ``plan`` from ``from_step`` with ``input`` reuses. A workflow that keeps a handoff record
    reuses nothing: the record a step saw depends on the order earlier steps finished in."""
    if keeps_handoff:
        return {}
    again = downstream(plan, from_step)
    reused: dict[str, ReusedOutput] = {}
    for name in TopologicalSorter({n: p.after for n, p in plan.items()}).static_order():
        step = plan[name]
        record = records.get(name, {})
        if (
            name in again
            or step.agent is None
            or step.branches is not None
            or step.validation is not None
            or step.map is not None
            or step.is_check
            or record.get("state") != "succeeded"
            or name not in results
            or not record.get("input_hash")
            or not all(dep in reused for dep in step.after)
        ):
            continue
        dependencies = used_fields({dep: json.loads(reused[dep].result_json) for dep in step.after}, step.uses)
        role = role_of(step.agent)
        seen = step_input_hash(step.agent, role, step.params, input, dependencies)
        if role is not None and seen == record["input_hash"]:
            reused[name] = ReusedOutput(results[name], seen, role.version)
    return reused


def reused_dependencies(plan: RunPlan, reused: dict[str, ReusedOutput]) -> dict[str, int]:
    """For each step that runs again, how many of its dependencies are reused (what the step
    path's join counter must start at, so the join fires when the others finish)."""
    counts = {name: sum(dep in reused for dep in step.after) for name, step in plan.items() if name not in reused}
    return {name: count for name, count in counts.items() if count}
