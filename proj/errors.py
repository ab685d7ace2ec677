"""The one exception tree of agentchord.

::

    AgentchordError
    ├── ConfigurationError          settings that cannot work
    ├── WorkflowSpecError           a user mistake in a workflow, found before anything runs
    │   ├── UnknownAgentError
    │   ├── DuplicateStepError
    │   ├── UnknownDependencyError
    │   ├── CycleError
    │   ├── InvalidInputError
    │   ├── InvalidApprovalError
    │   ├── InvalidMapError             a step's `map` path or shape cannot work
    │   └── SpecFileError
    ├── UnknownWorkflowError        `run NAME` with no such built-in or file
    ├── RunNotFoundError            no run with that id (never existed, or expired)
    ├── StepNotFoundError           the run has no step of that name (404)
    ├── RunTimeoutError             `Run.wait` gave up; the run goes on
    ├── RunFailedError              `Run.wait` on a run that ended failed, cancelled or rejected
    │   └── RunNeedsAttentionError      ... or that waits for an operator (a step escalated)
    ├── StepFailedError             an agent body raised; the step is retried or escalated
    ├── StepStateError              an operator action on a step that is not failed (409)
    ├── RerunNotAllowedError        a rerun of a run still active, or whose plan expired (409)
    ├── TransientError              raise it in an agent: retry this step later
    │   └── TransientModelError         a model provider's 429/5xx/timeout (honours Retry-After)
    ├── PermanentError              raise it in an agent: retrying will not help
    │   ├── MapItemsError               a map's path found no list (or too long a one) at run time
    │   └── PermanentModelError         a provider's 4xx, or structured output that stays unparsable
    ├── ApprovalError               a resume that changes nothing
    │   ├── ApprovalNotFoundError       no such approval (HTTP 404)
    │   ├── ApprovalConflictError       already decided; carries the decision that won (409)
    │   ├── ApprovalClosedError         its run ended (cancelled, failed, ...) (410)
    │   └── ApprovalDataError           the reviewer's data fails the gate's schema (422)
    └── RequestRejectedError        an inbound HTTP request refused before it reaches a run
        ├── AuthenticationError         missing/invalid/expired signature or token (401)
        ├── ReplayedWebhookError        a webhook-id seen before (409)
        ├── BodyTooLargeError           body over AGENTCHORD_MAX_BODY_BYTES (413)
        ├── MalformedBodyError          body is not JSON (400)
        └── InvalidCursorError          a page cursor this API never returned (422)

Every exception passes all its constructor arguments to ``super().__init__`` so that Celery's
JSON result backend can rebuild it (a test round-trips each one).
"""

from __future__ import annotations

import re
from typing import Any

# The HTTP API answers every error as an RFC 9457 problem whose ``type`` is this prefix plus the
# class name in words; a Python caller reads the same string off the exception.
PROBLEM_TYPE_PREFIX = "urn:agentchord:problem:"


def problem_slug(kind: type[BaseException]) -> str:
    """``RunNotFoundError`` -> ``run-not-found``."""
    name = kind.__name__.removesuffix("Error") or kind.__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class AgentchordError(Exception):
    """Base of every error agentchord raises on purpose."""

    @classmethod
    def problem_type(cls) -> str:
        """The ``type`` of the problem the HTTP API answers for this error, e.g.
        ``urn:agentchord:problem:run-not-found``."""
        return PROBLEM_TYPE_PREFIX + problem_slug(cls)


class ConfigurationError(AgentchordError):
    """The settings cannot work (no Redis URL, a time limit above the visibility timeout, ...)."""


class WorkflowSpecError(AgentchordError):
    """A workflow definition is invalid; raised before anything is dispatched."""


class UnknownAgentError(WorkflowSpecError):
    def __init__(self, agent: str, step: str, known: list[str]) -> None:
        super().__init__(agent, step, known)
        self.agent, self.step, self.known = agent, step, known

    def __str__(self) -> str:
        return (
            f"unknown agent {self.agent!r} in step {self.step!r}; known agents: "
            f"{', '.join(sorted(self.known)) or '(none)'} (a role of your own: list its module in "
            "AGENTCHORD_AGENT_MODULES)"
        )


class DuplicateStepError(WorkflowSpecError):
    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step

    def __str__(self) -> str:
        return f"step name {self.step!r} is used more than once; step names must be unique"


class UnknownDependencyError(WorkflowSpecError):
    def __init__(self, step: str, dependency: str) -> None:
        super().__init__(step, dependency)
        self.step, self.dependency = step, dependency

    def __str__(self) -> str:
        return f"step {self.step!r} depends on {self.dependency!r}, which is not a step of this workflow"


class CycleError(WorkflowSpecError):
    def __init__(self, cycle: list[str]) -> None:
        super().__init__(cycle)
        self.cycle = cycle

    def __str__(self) -> str:
        return f"the workflow has a cycle: {' -> '.join(self.cycle)}"


class InvalidInputError(WorkflowSpecError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"workflow input is not valid: {self.reason}"


class InvalidStartOptionError(WorkflowSpecError):
    """A start's budget or tenant is not valid: nothing was created."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(option, reason)
        self.option, self.reason = option, reason

    def __str__(self) -> str:
        return f"{self.option} is not valid: {self.reason}"


class InvalidApprovalError(WorkflowSpecError):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(step, reason)
        self.step, self.reason = step, reason

    def __str__(self) -> str:
        return f"approval gate {self.step!r} is not valid: {self.reason}"


class InvalidMapError(WorkflowSpecError):
    """A step's ``map`` cannot work: its path does not start at a dependency, or the step is a
    gate or validated."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(step, reason)
        self.step, self.reason = step, reason

    def __str__(self) -> str:
        return f"map of step {self.step!r} is not valid: {self.reason}"


class SpecFileError(WorkflowSpecError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"cannot load workflow file {self.path}: {self.reason}"


class UnknownWorkflowError(AgentchordError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name, known)
        self.name, self.known = name, known

    def __str__(self) -> str:
        return (
            f"unknown workflow {self.name!r}: not a built-in ({', '.join(sorted(self.known))}) and not a YAML/JSON file"
        )


class RunNotFoundError(AgentchordError):
    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"no run {self.run_id!r} in the registry (never started, or expired)"


class IdempotencyConflictError(AgentchordError):
    def __init__(self, key: str, run_id: str) -> None:
        super().__init__(key, run_id)
        self.key, self.run_id = key, run_id

    def __str__(self) -> str:
        return (
            f"idempotency key {self.key!r} already started run {self.run_id} with another workflow or input; "
            "use a new key, or pass allow_different_input=True to get that run back"
        )


class RunTimeoutError(AgentchordError):
    def __init__(self, run_id: str, timeout_s: float, state: str) -> None:
        super().__init__(run_id, timeout_s, state)
        self.run_id, self.timeout_s, self.state = run_id, timeout_s, state

    def __str__(self) -> str:
        return f"run {self.run_id} did not finish within {self.timeout_s:g}s (state: {self.state}); it goes on"


class RunFailedError(AgentchordError):
    def __init__(self, run_id: str, state: str, error: str | None) -> None:
        super().__init__(run_id, state, error)
        self.run_id, self.state, self.error = run_id, state, error

    def __str__(self) -> str:
        detail = f": {self.error}" if self.error else ""
        return f"run {self.run_id} ended {self.state}{detail}"


class StepFailedError(AgentchordError):
    def __init__(self, run_id: str, step: str, error: str) -> None:
        super().__init__(run_id, step, error)
        self.run_id, self.step, self.error = run_id, step, error

    def __str__(self) -> str:
        return f"step {self.step!r} of run {self.run_id} failed: {self.error}"


class ApprovalError(AgentchordError):
    """A resume call that changes nothing; the subclass says why."""


class ApprovalNotFoundError(ApprovalError):
    def __init__(self, approval_id: str) -> None:
        super().__init__(approval_id)
        self.approval_id = approval_id

    def __str__(self) -> str:
        return f"no approval {self.approval_id!r} (never requested, or expired with its run)"


class ApprovalConflictError(ApprovalError):
    def __init__(self, approval_id: str, state: str, decision: str) -> None:
        super().__init__(approval_id, state, decision)
        self.approval_id, self.state, self.decision = approval_id, state, decision

    def __str__(self) -> str:
        return f"approval {self.approval_id} was already decided: {self.decision!r} won"


class ApprovalClosedError(ApprovalError):
    def __init__(self, approval_id: str, reason: str) -> None:
        super().__init__(approval_id, reason)
        self.approval_id, self.reason = approval_id, reason

    def __str__(self) -> str:
        return f"approval {self.approval_id} is closed ({self.reason}); nothing was changed"


class ApprovalDataError(ApprovalError):
    """``errors``: one ``{"loc": [path...], "msg": ..., "type": ...}`` per violation (the HTTP
    API's field-error shape, with ``loc`` starting at ``data``)."""

    def __init__(self, approval_id: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(approval_id, errors)
        self.approval_id, self.errors = approval_id, errors

    def __str__(self) -> str:
        described = "; ".join(f"{'/'.join(str(p) for p in e['loc'][1:]) or '(root)'}: {e['msg']}" for e in self.errors)
        return f"data for approval {self.approval_id} fails the gate's schema: {described}"


class RequestRejectedError(AgentchordError):
    """An inbound HTTP request that is refused before it reaches the workflow."""


class AuthenticationError(RequestRejectedError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"not authenticated: {self.reason}"


class ReplayedWebhookError(RequestRejectedError):
    def __init__(self, webhook_id: str) -> None:
        super().__init__(webhook_id)
        self.webhook_id = webhook_id

    def __str__(self) -> str:
        return f"webhook-id {self.webhook_id!r} was already delivered; replays change nothing"


class BodyTooLargeError(RequestRejectedError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(limit_bytes)
        self.limit_bytes = limit_bytes

    def __str__(self) -> str:
        return f"request body is larger than {self.limit_bytes} bytes"


class ForbiddenError(RequestRejectedError):
    def __init__(self, who: str, action: str) -> None:
        super().__init__(who, action)
        self.who, self.action = who, action

    def __str__(self) -> str:
        return f"{self.who!r} may not {self.action}"


class TooManyAuthFailuresError(RequestRejectedError):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        return f"more than {self.limit} failed authentications from this client in a minute; try later"


class MalformedBodyError(RequestRejectedError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"request body is not valid JSON: {self.reason}"


class InvalidCursorError(RequestRejectedError):
    def __init__(self, cursor: str) -> None:
        super().__init__(cursor)
        self.cursor = cursor

    def __str__(self) -> str:
        return f"cursor {self.cursor[:80]!r} is not one this API returned (use X-Next-Cursor of the previous page)"


class RunNeedsAttentionError(RunFailedError):
    def __init__(self, run_id: str, state: str, error: str | None) -> None:
        super().__init__(run_id, state, error)

    def __str__(self) -> str:
        return f"run {self.run_id} needs attention: {self.error}; retry, skip or abort the step"


class StepNotFoundError(AgentchordError):
    def __init__(self, run_id: str, step: str, known: list[str]) -> None:
        super().__init__(run_id, step, known)
        self.run_id, self.step, self.known = run_id, step, known

    def __str__(self) -> str:
        return f"run {self.run_id} has no step {self.step!r}; its steps: {', '.join(self.known)}"


class StepStateError(AgentchordError):
    def __init__(self, run_id: str, step: str, action: str, state: str) -> None:
        super().__init__(run_id, step, action, state)
        self.run_id, self.step, self.action, self.state = run_id, step, action, state

    def __str__(self) -> str:
        return (
            f"cannot {self.action} step {self.step!r} of run {self.run_id}: it is {self.state}, "
            "and only a failed step waiting for an operator can be retried or skipped"
        )


class RerunNotAllowedError(AgentchordError):
    """A rerun was asked of a run that cannot be rerun now (still active, or its plan expired)."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(run_id, reason)
        self.run_id, self.reason = run_id, reason

    def __str__(self) -> str:
        return f"cannot rerun run {self.run_id}: {self.reason}"


class TransientError(AgentchordError):
    """Raise from an agent for a failure worth retrying (a busy provider, a flaky network)."""


class PermanentError(AgentchordError):
    """Raise from an agent for a failure that retrying cannot fix (bad input, a 4xx)."""


class MapItemsError(PermanentError):
    """At run time, a map step's path did not lead to a list (or to too long a list): the step
    waits for an operator with this message."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(step, reason)
        self.step, self.reason = step, reason

    def __str__(self) -> str:
        return f"cannot map step {self.step!r}: {self.reason}"


class TransientModelError(TransientError):
    def __init__(self, provider: str, reason: str, retry_after_s: float = 0.0) -> None:
        super().__init__(provider, reason, retry_after_s)
        self.provider, self.reason, self.retry_after_s = provider, reason, retry_after_s

    def __str__(self) -> str:
        wait = f" (retry after {self.retry_after_s:g}s)" if self.retry_after_s else ""
        return f"model provider {self.provider} failed transiently: {self.reason}{wait}"


class BudgetExceededError(PermanentError):
    """A model call refused because the run's budget would be passed (see :mod:`proj.budget`)."""

    def __init__(self, run_id: str, reason: str, first: bool = False) -> None:
        super().__init__(run_id, reason, first)
        # first: no call of this run was refused since its limits were set (this step decides
        # what happens to the run; the others only wait).
        self.run_id, self.reason, self.first = run_id, reason, first

    def __str__(self) -> str:
        return f"budget exceeded: {self.reason}"


class PermanentModelError(PermanentError):
    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(provider, reason)
        self.provider, self.reason = provider, reason

    def __str__(self) -> str:
        return f"model provider {self.provider} refused the request: {self.reason}"
