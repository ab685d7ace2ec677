"""A registered agent role: its function, its Celery task name, its defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
