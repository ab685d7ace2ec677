"""Dispatch from the registry's view of a run: send what is ready, park at approval gates.

The step path does not come here for inline workflows (no gates, routers or validators): the
script that stores a step's result claims its ready successors and the worker sends them. This
is the general path: ``start``, a resume, an operator's action, the watchdog, and every step of
a workflow with gates, routers or validators (called in the worker that stored the result).
Idempotent and safe to call from any number of processes at once: each step is claimed for
dispatch exactly once, atomically, in the registry.
"""

from __future__ import annotations

from agents.runtime import set_dispatcher, steps_with_roles
from coordinator.engine.checkpoints import park_gate
from coordinator.engine.compile import is_gate, ready_steps, real_steps, skipped_steps
from coordinator.engine.fanout import open_map
from proj.messages import send_steps
from proj.registry import ADMITTED, Registry
from proj.tracing import within_run_trace


def dispatch_ready(registry: Registry, run_id: str) -> list[str]:
    """Dispatch every step of ``run_id`` that is ready and not yet dispatched; park at gates;
    end the run when every step has a result or is skipped. Returns the steps claimed here."""
    snapshot = registry.snapshot(run_id)
    if snapshot.state not in ("running", "waiting_approval"):
        return []
    skipped = skipped_steps(snapshot.plan, snapshot.approvals)
    if snapshot.plan and snapshot.done | skipped >= real_steps(snapshot.plan):
        if registry.finish_run(run_id, "succeeded") == ADMITTED:
            dispatch_admitted(registry)
        return []
    claimed = registry.claim_dispatch(run_id, ready_steps(snapshot.plan, snapshot.done, snapshot.dispatched, skipped))
    gates = [step for step in claimed if is_gate(snapshot.plan[step])]
    for gate in gates:
        park_gate(registry, registry.settings, run_id, gate, snapshot.plan)
    maps = [step for step in claimed if snapshot.plan[step].map]
    with within_run_trace(snapshot.traceparent):
        agents = [(step, snapshot.plan[step]) for step in claimed if step not in gates and step not in maps]
        send_steps(run_id, steps_with_roles(registry, run_id, agents), snapshot.plan_digest)
        done_at_once = [open_map(registry, run_id, step, snapshot.plan[step], snapshot.plan_digest) for step in maps]
    if any(done_at_once):
        return claimed + dispatch_ready(registry, run_id)  # an empty map: what follows it is ready
    return claimed


def dispatch_admitted(registry: Registry) -> list[str]:
    """Dispatch the runs admitted from admission queues (by this process ending a run, or by one
    that died before dispatching them); returns their ids."""
    admitted = registry.take_admitted()
    for run_id in admitted:
        dispatch_ready(registry, run_id)
    return admitted


# Every process that imports the coordinator (every worker does) dispatches non-inline
# workflows in-process after storing a step's result, with no coordinator.advance hop.
set_dispatcher(dispatch_ready)
