"""The Celery app of agentchord and what sits below agents and coordinator.

``celery -A proj worker -Q reviewer`` runs the reviewer role's workers.
"""

from proj.celery import app, celery_config, configure, current_settings
from proj.errors import (
    AgentchordError,
    ApprovalClosedError,
    ApprovalConflictError,
    ApprovalDataError,
    ApprovalError,
    ApprovalNotFoundError,
    AuthenticationError,
    BodyTooLargeError,
    ConfigurationError,
    CycleError,
    DuplicateStepError,
    InvalidApprovalError,
    InvalidInputError,
    MalformedBodyError,
    ReplayedWebhookError,
    RequestRejectedError,
    RunFailedError,
    RunNotFoundError,
    RunTimeoutError,
    SpecFileError,
    StepFailedError,
    UnknownAgentError,
    UnknownDependencyError,
    UnknownWorkflowError,
    WorkflowSpecError,
)
from proj.keys import Keys, RunKeys
from proj.queues import COORDINATOR_QUEUE, agent_task_name, queue_for_task
from proj.settings import Settings

__all__ = [
    "COORDINATOR_QUEUE",
    "AgentchordError",
    "ApprovalClosedError",
    "ApprovalConflictError",
    "ApprovalDataError",
    "ApprovalError",
    "ApprovalNotFoundError",
    "AuthenticationError",
    "BodyTooLargeError",
    "ConfigurationError",
    "CycleError",
    "DuplicateStepError",
    "InvalidApprovalError",
    "InvalidInputError",
    "Keys",
    "MalformedBodyError",
    "ReplayedWebhookError",
    "RequestRejectedError",
    "RunFailedError",
    "RunKeys",
    "RunNotFoundError",
    "RunTimeoutError",
    "Settings",
    "SpecFileError",
    "StepFailedError",
    "UnknownAgentError",
    "UnknownDependencyError",
    "UnknownWorkflowError",
    "WorkflowSpecError",
    "agent_task_name",
    "app",
    "celery_config",
    "configure",
    "current_settings",
    "queue_for_task",
]
