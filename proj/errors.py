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
    │   └── SpecFileError
    ├── UnknownWorkflowError        `run NAME` with no such built-in or file
    ├── RunNotFoundError            no run with that id (never existed, or expired)
    ├── RunTimeoutError             `Run.wait` gave up; the run goes on
    ├── RunFailedError              `Run.wait` on a run that ended failed or cancelled
    └── StepFailedError             an agent body raised; recorded, and the run fails

Every exception passes all its constructor arguments to ``super().__init__`` so that Celery's
JSON result backend can rebuild it (a test round-trips each one).
"""

from __future__ import annotations


class AgentchordError(Exception):
    """Base of every error agentchord raises on purpose."""


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
            f"{', '.join(sorted(self.known)) or '(none)'}"
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
