"""The watchdog: re-drives runs that stopped making progress, from the registry alone.

A run can stall when a message is lost between two hops: a worker killed outright (its
unacked message waits for the broker's visibility timeout), a Redis restart between a result
and its dispatch, a chord whose counter was lost. Every such run still has all its state in
the registry, so re-driving it is: send again every dispatched step that has no result and no
live lease (a duplicate is harmless: steps are effectively once), then dispatch what is ready.
"""

from __future__ import annotations

import logging

from coordinator.engine.children import start_child
from coordinator.engine.compile import is_gate
from coordinator.engine.dispatch import dispatch_admitted, dispatch_ready
from coordinator.engine.fanout import open_map
from proj.messages import send_step
from proj.registry import Registry

logger = logging.getLogger(__name__)


def redrive(registry: Registry, run_id: str) -> list[str]:
    """Re-send the run's orphaned steps and dispatch what is ready; returns the re-sent steps."""
    snapshot = registry.snapshot(run_id)
    if snapshot.plan_digest and snapshot.state in ("running", "waiting_approval", "needs_attention"):
        # An open run keeps its workflow version's plan, however long it waits.
        registry.keep_plan(snapshot.plan_digest)
    if snapshot.state != "running":
        # Parked or waiting for an operator: waiting is what it should do. Ended: drop it.
        if snapshot.state not in ("waiting_approval", "needs_attention"):
            registry.client.zrem(registry.keys.active_runs, run_id)
        return []
    records = registry.step_records(run_id)
    orphans = [
        step
        for step in snapshot.plan
        if step in snapshot.dispatched
        and step not in snapshot.done
        and not is_gate(snapshot.plan[step])
        # Failed steps wait for an operator; a validating step waits for its validator.
        and records.get(step, {}).get("state") not in ("failed", "validating")
        and registry.claim_holder(run_id, step) is None
    ]
    for step in orphans:
        if snapshot.plan[step].workflow:
            start_child(registry, run_id, step)  # finds the child (same key); settles it if it ended
        elif snapshot.plan[step].map:
            # A map re-sends its members that have no result and no live holder.
            open_map(registry, run_id, step, snapshot.plan[step], snapshot.plan_digest)
        else:
            send_step(run_id, step, snapshot.plan[step], snapshot.plan_digest)
        registry.add_event(run_id, "step_redriven", step=step)
    dispatch_ready(registry, run_id)
    registry.touch_active(run_id)
    if orphans:
        logger.warning("watchdog re-drove run %s: %s", run_id, ", ".join(orphans))
    return orphans


def flag_unserved(registry: Registry, roles: list[str]) -> list[tuple[str, str]]:
    """A ``no_worker`` event, once, on every run with a step waiting in a role's queue that no
    live worker serves (heartbeats: proj.registry.workers); returns the (run, step) pairs flagged
    now. Run with the watchdog, off the step path. A worker that starts later picks the work up."""
    served = {queue for worker in registry.live_workers() for queue in worker.queues}
    unserved = [role for role in roles if role not in served]
    flagged = []
    for queue, depth in registry.queue_depths(unserved).items():
        if not depth:
            continue
        for task_id in registry.waiting_task_ids(queue):
            run_id, _, step = task_id.partition(".")
            if not step or not registry.client.exists(registry.run_keys(run_id).run):
                continue
            marker = registry.keys.no_worker_reported(run_id, step)
            if registry.client.set(marker, "1", nx=True, ex=registry.settings.finished_run_ttl_s):
                registry.add_event(run_id, "no_worker", step=step, queue=queue)
                flagged.append((run_id, step))
    return flagged


def sweep_stalled(registry: Registry) -> dict[str, list[str]]:
    """Re-drive every run without progress for ``watchdog_stall_s``; {run: re-sent steps}.
    Also drops expired runs from the runs index."""
    registry.prune_runs_index()
    dispatch_admitted(registry)  # admitted by a process that died before dispatching them
    stall_s = registry.settings.watchdog_stall_s
    if stall_s <= 0:
        return {}
    return {run_id: redrive(registry, run_id) for run_id in registry.stalled_runs(stall_s)}
