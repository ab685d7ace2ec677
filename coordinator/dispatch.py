"""Dispatch: from the registry's view of a run, send what is ready; park at approval gates.

Called by the ``coordinator.advance`` callback, by ``start`` and by a resume. Idempotent and
safe to call from any number of processes at once: each step is claimed for dispatch exactly
once, atomically, in the registry.
"""

from __future__ import annotations

from coordinator.checkpoints import park_gate
from coordinator.compile import canvas_for, is_gate, join_groups, ready_steps, real_steps, skipped_steps
from coordinator.metrics import record_finished_run
from proj.celery import app
from proj.registry import Registry
from proj.tracing import within_run_trace


def dispatch_ready(registry: Registry, run_id: str) -> list[str]:
    """Dispatch every step of ``run_id`` that is ready and not yet dispatched; park at gates;
    end the run when every step has a result or is skipped. Returns the steps claimed here."""
    snapshot = registry.snapshot(run_id)
    if snapshot.state not in ("running", "waiting_approval"):
        return []
    skipped = skipped_steps(snapshot.plan, snapshot.approvals)
    if snapshot.plan and snapshot.done | skipped >= real_steps(snapshot.plan):
        if registry.finish_run(run_id, "succeeded"):
            record_finished_run(registry, run_id)
        return []
    claimed = registry.claim_dispatch(run_id, ready_steps(snapshot.plan, snapshot.done, snapshot.dispatched, skipped))
    gates = [step for step in claimed if is_gate(snapshot.plan[step])]
    for gate in gates:
        park_gate(registry, registry.settings, run_id, gate, snapshot.plan)
    agents = [step for step in claimed if step not in gates]
    with within_run_trace(snapshot.traceparent):
        for steps in join_groups(agents, snapshot.plan):
            canvas_for(app, run_id, steps, snapshot.plan).apply_async()
    return claimed
