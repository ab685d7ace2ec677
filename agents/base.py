"""The ``@agent`` decorator: a plain function becomes a role with its own Celery task and queue.

    from agents import agent, StepContext

    @agent("summarizer", retry=RetryPolicy(max_attempts=5), time_limit_s=120)
    def summarize(ctx: StepContext) -> dict:
        return {"summary": ctx.input["text"][:100]}

registers the role ``summarizer`` and the task ``agents.summarizer``, routed to the queue
``summarizer``; ``celery -A proj worker -Q summarizer`` runs it once the module is listed in
``AGENTCHORD_AGENT_MODULES``. The function stays callable and testable without Celery.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from celery.signals import celeryd_init
from pydantic import BaseModel

from agents.role import ROLES, AgentFunction, AgentRole
from agents.runtime import execute_step
from proj.celery import app, current_settings
from proj.errors import ConfigurationError
from proj.policy import RetryPolicy
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE, agent_task_name

F = TypeVar("F", bound=AgentFunction)

_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


_ROLES = ROLES  # the process's role registry (agents/role.py), written only here


def agent(
    role: str,
    *,
    retry: RetryPolicy | None = None,
    time_limit_s: float | None = None,
    soft_time_limit_s: float | None = None,
    prompt: str = "",
    version: str = "1",
) -> Callable[[F], F]:
    """Register ``function(ctx: StepContext) -> BaseModel | dict`` as the agent role ``role``.

    ``retry`` and the time limits are the role's defaults; a workflow step can override them.
    ``version``: bump it when the role's behaviour changes; each step records the version that
    ran it, and a rerun reuses only outputs of the same version.
    """
    if not _ROLE_NAME.match(role) or role == COORDINATOR_QUEUE:
        raise ConfigurationError(
            f"invalid agent role name {role!r}: use lower-case letters, digits and underscores, "
            f"starting with a letter (it becomes a queue name), and not {COORDINATOR_QUEUE!r}"
        )

    def register(function: F) -> F:
        existing = _ROLES.get(role)
        if existing is not None and _qualname(existing.function) != _qualname(function):
            raise ConfigurationError(
                f"agent role {role!r} is defined twice: {_qualname(existing.function)} and {_qualname(function)}"
            )
        if not version or len(version) > 64:
            raise ConfigurationError(f"agent role {role!r}: version must be 1-64 characters, got {version!r}")
        entry = AgentRole(
            role, function, agent_task_name(role), retry, time_limit_s, soft_time_limit_s, prompt, str(version)
        )
        _ROLES[role] = entry
        _make_task(entry)
        return function

    return register


def _qualname(function: AgentFunction) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def _make_task(entry: AgentRole) -> None:
    def run_agent_step(task: Task, run_id: str, step: str, plan: str = "") -> dict[str, Any]:
        return execute_step(task, entry, run_id, step, plan)

    run_agent_step.__name__ = f"{entry.name}_step"
    app.task(
        name=entry.task_name,
        bind=True,
        acks_late=current_settings().acks_late,
        reject_on_worker_lost=current_settings().acks_late,
        # Retries are ours (proj.policy): Celery's counter must never stop them.
        max_retries=None,
    )(run_agent_step)


def role_defaults(agent_name: str | None) -> dict[str, Any]:
    """The retry policy and time limits a step of ``agent_name`` gets unless it sets its own."""
    settings = current_settings()
    role = _ROLES.get(agent_name or "")
    hard = (role.time_limit_s if role else None) or settings.step_time_limit_s
    soft = (role.soft_time_limit_s if role else None) or settings.step_soft_time_limit_s or hard * 0.9
    retry = role.retry.model_dump() if role and role.retry else settings.default_retry()
    return {"retry": retry, "time_limit_s": hard, "soft_time_limit_s": soft}


def known_roles() -> list[str]:
    """The registered role names, sorted."""
    return sorted(_ROLES)


def get_role(name: str) -> AgentRole | None:
    return _ROLES.get(name)


def output_fields(name: str) -> list[str] | None:
    """The fields of role ``name``'s declared output model (its function's return annotation, a
    pydantic model), or None when it declares none (a dict, or no annotation)."""
    role = _ROLES.get(name)
    if role is None:
        return None
    try:
        returned = typing.get_type_hints(role.function).get("return")
    except Exception:  # an annotation that does not resolve declares nothing usable
        return None
    if isinstance(returned, type) and issubclass(returned, BaseModel):
        return list(returned.model_fields)
    return None


@celeryd_init.connect  # type: ignore[untyped-decorator]
def _serve_every_role_by_default(**_kwargs: Any) -> None:
    """``celery -A proj worker`` with no ``-Q`` serves every declared role and the coordinator and
    notifications queues (Celery alone would consume only the default queue): the first command a
    Celery user runs, and the one-process development setup. ``-Q`` narrows it, ``-X reviewer``
    leaves a role out. Runs after the worker imported the agent modules, before it picks queues."""
    queues = app.amqp.queues
    for name in (COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE, *known_roles()):
        if name not in queues:
            # As Celery declares a queue it was not told about (quorum on RabbitMQ: the sender
            # declares it so too, and a queue's type must match whoever declares it first).
            queues.add(queues.new_missing(name))
