"""Map steps: one member per element of a list that exists only at run time.

When a map step is claimed (its dependencies finished), the dispatcher reads the list its path
leads to, records how many members it has (once: :meth:`Registry.open_map`) and sends one
message per member, each a step named ``<step>[<i>]`` with the map step's plan. Each member
stores its own result; the member that completes the count joins the map (``finish_member.lua``):
the list of results, in order, becomes the map step's result and the steps after it are
dispatched as after any step. A list that is not there, not a list or too long puts the map step
in ``needs_attention`` with a message naming what was found.
"""

from __future__ import annotations

from agents.runtime import steps_with_roles
from proj.errors import MapItemsError
from proj.messages import send_steps
from proj.plan import StepPlan, map_items, member_name
from proj.registry import Registry


def open_map(registry: Registry, run_id: str, step: str, plan: StepPlan, plan_digest: str) -> bool:
    """Count map ``step``'s list and send its members (those still missing, when it was opened
    before: a re-drive or an operator's retry). True when the map is done already (an empty
    list): the caller dispatches what follows."""
    assert plan.map is not None
    source = plan.map.split(".", 1)[0]
    try:
        items = map_items(step, plan.map, registry.results_of(run_id, [source]), registry.settings.map_max_items)
    except MapItemsError as exc:
        registry.escalate(run_id, step, "*", str(exc), "", 0, plan.agent or "")
        return False
    opened = registry.open_map(run_id, step, len(items))
    if not items:
        return True
    members = [member_name(step, index) for index in range(len(items))]
    if not opened:
        members = missing_members(registry, run_id, members)
    send_steps(run_id, steps_with_roles(registry, run_id, [(m, plan) for m in members]), plan_digest)
    return False


def missing_members(registry: Registry, run_id: str, members: list[str]) -> list[str]:
    """Members with no result, not waiting for an operator, and not held by a live worker."""
    rk = registry.run_keys(run_id)
    with registry.client.pipeline(transaction=False) as pipe:
        pipe.hmget(rk.steps, [f"{member}.state" for member in members])
        for member in members:
            pipe.exists(rk.claim(member))
        states, *held = pipe.execute()
    return [
        member
        for member, state, holder in zip(members, states, held, strict=True)
        if state not in ("succeeded", "failed") and not holder
    ]
