"""Dispatch from the registry's view of a run: send what is ready, park at approval gates.

The step path does not come here for inline workflows (no gates, routers or validators): the
script that stores a step's result claims its ready successors and the worker sends them. This
is the general path: ``start``, a resume, an operator's action, the watchdog, and every step of
a workflow with gates, routers or validators (called in the worker that stored the result).
Idempotent and safe to call from any number of processes at once: each step is claimed for
dispatch exactly once, atomically, in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.runtime import set_admitted_dispatcher, set_dispatcher, steps_with_roles
from coordinator.engine.checkpoints import park_gate
from coordinator.engine.compile import is_gate, ready_steps, real_steps, skipped_steps
from coordinator.engine.fanout import open_map
from proj.celery import app
from proj.messages import send_steps
from proj.queues import START_CHILD_TASK
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
    children = [step for step in claimed if snapshot.plan[step].workflow]
    with within_run_trace(snapshot.traceparent):
        for step in children:
            _children[0](registry, run_id, step)
        others = {*gates, *maps, *children}
        agents = [(step, snapshot.plan[step]) for step in claimed if step not in others]
        send_steps(run_id, steps_with_roles(registry, run_id, agents), snapshot.plan_digest)
        done_at_once = [open_map(registry, run_id, step, snapshot.plan[step], snapshot.plan_digest) for step in maps]
    if any(done_at_once):
        return claimed + dispatch_ready(registry, run_id)  # an empty map: what follows it is ready
    return claimed


def dispatch_admitted(registry: Registry) -> list[str]:
    """Dispatch the runs admitted from admission queues (by this process ending a run, or by one
    that died before dispatching them), and settle the parent steps of child runs that ended;
    returns the admitted runs' ids."""
    admitted = registry.take_admitted()
    for run_id in admitted:
        dispatch_ready(registry, run_id)
    for child in registry.take_ended_children():
        _settlers[0](registry, child)
    return admitted


def _start_child_by_message(_registry: Registry, run_id: str, step: str) -> None:
    app.send_task(START_CHILD_TASK, kwargs={"run_id": run_id, "step": step}, task_id=f"{run_id}.{step}.child")


def _settle_later(registry: Registry, child: str) -> None:
    # This process cannot settle it (coordinator.engine.children is not loaded): put it back for
    # the next sweep of the watchdog, which runs in a worker that can.
    registry.client.rpush(registry.keys.children_ended, child)


# How a claimed child step starts its run and how an ended child settles its parent's step:
# coordinator.engine.children installs both when imported (workers, the API, the Python API do).
_children: list[Callable[[Registry, str, str], Any]] = [_start_child_by_message]
_settlers: list[Callable[[Registry, str], Any]] = [_settle_later]


def set_children(start: Callable[[Registry, str, str], Any], settle: Callable[[Registry, str], Any]) -> None:
    _children[0], _settlers[0] = start, settle


# Every process that imports the coordinator (every worker does) dispatches non-inline
# workflows in-process after storing a step's result, with no coordinator.advance hop.
set_dispatcher(dispatch_ready)
set_admitted_dispatcher(dispatch_admitted)
