"""A run's status as the Python API, the HTTP API and reports show it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from proj.budget import BudgetSpend


class StepStatus(BaseModel):
    state: str
    agent: str
    worker: str | None = None
    error: str | None = None
    body_runs: int = 0
    agent_version: str | None = Field(default=None, description="The version of the role that ran the step.")
    child_run: str | None = Field(default=None, description="A workflow step: the child run it started.")
    members: int | None = Field(default=None, description="A map step: how many members its list gave.")
    members_done: int = Field(default=0, description="A map step: members with a result so far.")
    reused_from: str | None = Field(
        default=None, description="A rerun's step not run again: the run whose stored output it reused."
    )


class RunStatus(BaseModel):
    id: str
    workflow: str
    state: str
    created_at: float
    finished_at: float | None = None
    error: str | None = None
    steps: dict[str, StepStatus]
    tenant: str = Field(default="default", description="Whose run it is, for the admission limits.")
    budget: BudgetSpend | None = Field(default=None, description="Spend against the run's budget, if it has one.")
    workflow_version: str = Field(
        default="",
        description="The workflow version the run started with (its declared version, else its plan's digest).",
    )
    parent_run: str | None = Field(default=None, description="A child run: the run whose step started it.")
    parent_step: str | None = Field(default=None, description="A child run: that step.")
    rerun_of: str | None = Field(default=None, description="A rerun: the run it reran.")
    rerun_from: str | None = Field(default=None, description="A rerun: the step it ran again from.")
