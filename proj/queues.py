"""One queue per agent role, named after the role; coordinator tasks on their own queue.

Routing is by task name, not by the task object, so a process that never imported a role's
module (a coordinator worker, the API) still sends ``agents.reviewer`` to the ``reviewer`` queue.
"""

from __future__ import annotations

from typing import Any

AGENT_TASK_PREFIX = "agents."
COORDINATOR_TASK_PREFIX = "coordinator."
COORDINATOR_QUEUE = "coordinator"
NOTIFICATIONS_QUEUE = "notifications"
# The coordinator callback's stable name; agents re-dispatch a step into it after a hard time limit.
ADVANCE_TASK = "coordinator.advance"
# The errback of every agent task (hard time limits are only visible there).
STEP_FAILED_TASK = "coordinator.step_failed"
# Coordinator tasks that get a queue of their own: outbound HTTP must never delay a handoff.
_OWN_QUEUE = {"coordinator.notify_approval": NOTIFICATIONS_QUEUE}


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
