"""Workflows: specs, the chord/chain coordinator, and the runner callers use."""

from coordinator.engine.approvals import resume, sweep_deadlines
from coordinator.engine.checkpoints import ApprovalView, get_approval, pending_approvals
from coordinator.engine.specs import (
    Approval,
    Step,
    Validate,
    Workflow,
    builtin_workflow,
    builtin_workflows,
    load_workflow,
    parse_workflow,
    register_workflow,
    resolve_workflow,
)
from coordinator.interfaces.runner import Run, get_run, list_runs, rerun, start
from coordinator.observation.status import RunStatus, StepStatus
from coordinator.observation.timing import RunTimings, StepTiming, compute_timings
from proj.budget import Budget, BudgetSpend

__all__ = [
    "Approval",
    "ApprovalView",
    "Budget",
    "BudgetSpend",
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
    "register_workflow",
    "rerun",
    "resolve_workflow",
    "resume",
    "start",
    "sweep_deadlines",
]
