"""Workflows: specs, the chord/chain coordinator, and the runner callers use."""

from coordinator.runner import Run, RunStatus, StepStatus, get_run, list_runs, start
from coordinator.specs import (
    Step,
    Workflow,
    builtin_workflow,
    builtin_workflows,
    load_workflow,
    parse_workflow,
    resolve_workflow,
)
from coordinator.timing import RunTimings, StepTiming, compute_timings

__all__ = [
    "Run",
    "RunStatus",
    "RunTimings",
    "Step",
    "StepStatus",
    "StepTiming",
    "Workflow",
    "builtin_workflow",
    "builtin_workflows",
    "compute_timings",
    "get_run",
    "list_runs",
    "load_workflow",
    "parse_workflow",
    "resolve_workflow",
    "start",
]
