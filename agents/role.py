"""A registered agent role: its function, its Celery task name, its defaults."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proj.errors import ConfigurationError
from proj.policy import RetryPolicy

AgentFunction = Callable[..., Any]


@dataclass(frozen=True)
class AgentRole:
    name: str
    function: AgentFunction
    task_name: str
    retry: RetryPolicy | None = None
    time_limit_s: float | None = None
    soft_time_limit_s: float | None = None
    prompt: str = ""  # what the role is asked to do; a collapsed run combines these
    # Bumped by the role's author when its behaviour changes: each step records the version that
    # ran it, and a rerun never reuses an output made by another version.
    version: str = "1"


# Every role registered in this process (by ``agents.agent``), by name.
ROLES: dict[str, AgentRole] = {}


def registered_role(name: str) -> AgentRole | None:
    """The role ``name`` as registered in this process; None if no imported module defines it."""
    return ROLES.get(name)


def load_agent_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import user modules that define roles (``AGENTCHORD_AGENT_MODULES``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import agent module {module!r} listed in AGENTCHORD_AGENT_MODULES: {exc}"
            ) from exc
