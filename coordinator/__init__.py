"""Workflows: specs, the chord/chain coordinator, and the runner callers use."""

from coordinator.approvals import resume, sweep_deadlines
from coordinator.checkpoints import ApprovalView, get_approval, pending_approvals
from coordinator.runner import Run, RunStatus, StepStatus, get_run, list_runs, start
from coordinator.specs import (
    Approval,
    Step,
    Validate,
    Workflow,
    builtin_workflow,
    builtin_workflows,
    load_workflow,
    parse_workflow,
    resolve_workflow,
)
from coordinator.timing import RunTimings, StepTiming, compute_timings

__all__ = [
    "Approval",
    "ApprovalView",
    "Run",
    "RunStatus",
    "RunTimings",
    "Step",
    "StepStatus",
    "StepTiming",
    "Validate",
    "Workflow",
    "builtin_workflow",
    "builtin_workflows",
    "compute_timings",
    "get_approval",
    "get_run",
    "list_runs",
    "load_workflow",
    "parse_workflow",
    "pending_approvals",
    "resolve_workflow",
    "resume",
    "start",
    "sweep_deadlines",
]
