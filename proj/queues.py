"""One queue per agent role, named after the role; coordinator tasks on their own queue.

Routing is by task name, not by the task object, so a process that never imported a role's
module (a coordinator worker, the API) still sends ``agents.reviewer`` to the ``reviewer`` queue.
"""

from __future__ import annotations

from typing import Any

# The Redis broker keeps one list per queue and priority step (kombu's redis transport): steps 0
# (and no priority) in the queue's own list, step p in "<queue>\x06\x16<p>", consumed in this
# order. kombu's default four steps: priorities 0-2, 3-5, 6-8 and 9 share a list. Every step is
# a key in each worker's BRPOP, so more steps would cost every poll of every worker.
PRIORITY_STEPS = (0, 3, 6, 9)
_PRIORITY_SEP = "\x06\x16"


def priority_lists(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s messages, in the order workers take them."""
    return [queue if p == 0 else f"{queue}{_PRIORITY_SEP}{p}" for p in PRIORITY_STEPS]


AGENT_TASK_PREFIX = "agents."
COORDINATOR_TASK_PREFIX = "coordinator."
COORDINATOR_QUEUE = "coordinator"
NOTIFICATIONS_QUEUE = "notifications"
# Every coordinator task's name, the one table of them. Names are stable: a message in a queue
# names its task, so a rename would orphan it.
ADVANCE_TASK = "coordinator.advance"  # dispatch what is ready in a run (no longer on the step path)
STEP_FAILED_TASK = "coordinator.step_failed"  # every agent task's errback (hard time limits)
ESCALATE_TO_APPROVAL_TASK = "coordinator.escalate_to_approval"  # a failure handed to a human
VALIDATE_TASK = "coordinator.validate_candidate"  # a validator gate: check the candidate
RERUN_TASK = "coordinator.rerun_step"  # a validator gate: the generator's next round
NOTIFY_TASK = "coordinator.notify_approval"  # one signed outbound notification
SWEEP_DEADLINES_TASK = "coordinator.sweep_deadlines"  # beat: approvals past their deadline
WATCHDOG_TASK = "coordinator.watchdog"  # beat: re-drive stalled runs
START_CHILD_TASK = "coordinator.start_child"  # a child step, claimed in a process that cannot start runs
COORDINATOR_TASKS = (
    ADVANCE_TASK,
    STEP_FAILED_TASK,
    ESCALATE_TO_APPROVAL_TASK,
    VALIDATE_TASK,
    RERUN_TASK,
    NOTIFY_TASK,
    SWEEP_DEADLINES_TASK,
    WATCHDOG_TASK,
    START_CHILD_TASK,
)
# Coordinator tasks that get a queue of their own: outbound HTTP must never delay a handoff.
_OWN_QUEUE = {NOTIFY_TASK: NOTIFICATIONS_QUEUE}


def agent_task_name(role: str) -> str:
    """The stable Celery task name of a role: ``agents.<role>``."""
    return f"{AGENT_TASK_PREFIX}{role}"


def queue_for_task(name: str) -> str:
    """The queue a task name goes to: its role for agents, ``notifications`` for outbound
    webhooks, ``coordinator`` otherwise."""
    if name.startswith(AGENT_TASK_PREFIX):
        return name[len(AGENT_TASK_PREFIX) :]
    return _OWN_QUEUE.get(name, COORDINATOR_QUEUE)


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str]:
    """Celery router (``task_routes``): every task to the queue :func:`queue_for_task` names."""
    return {"queue": queue_for_task(name)}
