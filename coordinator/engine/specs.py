"""Workflow specs: the DAG of steps, validated before anything is dispatched.

    from coordinator import Workflow, Step
    wf = Workflow(name="code_review", steps=[
        Step(name="review", agent="reviewer"),
        Step(name="tests", agent="test_writer", after=["review"]),
        Step(name="docs", agent="doc_generator", after=["review"]),
        Step(name="merge", agent="merger", after=["tests", "docs"]),
    ])

The same in YAML or JSON loads with :func:`load_workflow`. Structural mistakes (duplicate or
missing step names, unknown dependencies, cycles) raise when the model is built; unknown agents
are checked against the registered roles by :meth:`Workflow.check_agents`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from graphlib import CycleError as GraphCycleError
from graphlib import TopologicalSorter
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

import agents
from proj.budget import Budget
from proj.errors import (
    CycleError,
    DuplicateStepError,
    InvalidApprovalError,
    InvalidMapError,
    SpecFileError,
    UnknownAgentError,
    UnknownDependencyError,
    UnknownWorkflowError,
    WorkflowSpecError,
)
from proj.policy import RetryPolicy

_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"


class Approval(BaseModel):
    """A human approval gate: the run parks here until a reviewer decides (or the deadline).

    Example:
        >>> Approval(prompt="Merge?", schema={"type": "object"}, timeout_s=3600, on_timeout="reject")
        Approval(prompt='Merge?', show=None, data_schema={'type': 'object'}, timeout_s=3600.0, ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    prompt: str = Field(default="Approve?", min_length=1, description="What the reviewer is asked.")
    show: list[str] | None = Field(
        default=None, description="Steps whose outputs the reviewer sees; default: the gate's dependencies."
    )
    data_schema: dict[str, JsonValue] | None = Field(
        default=None,
        alias="schema",
        description="JSON Schema (or a pydantic model class) the reviewer's `data` must satisfy.",
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Deadline after parking, in seconds.")
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    on_reject: str | None = Field(
        default=None, description="A step (depending on this gate) that runs only if the gate rejects."
    )
    deciders: list[str] | None = Field(
        default=None,
        description="Names of the API tokens that may decide this gate over HTTP (default: any token with "
        "the approve scope). Python and CLI decisions are operators' and are not restricted.",
    )

    @field_validator("data_schema", mode="before")
    @classmethod
    def _schema_from_model(cls, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value.model_json_schema()
        return value


# A quantified group that itself contains a quantifier, e.g. (a+)+ or (\w*)*: the shape of the
# patterns whose matching time explodes on a crafted input.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[*+?}][^()]*\)\s*[*+{]")
_MAX_PATTERN = 200


def _pattern_problem(pattern: str) -> str | None:
    """Why a schema pattern is refused, or None."""
    if len(pattern) > _MAX_PATTERN:
        return f"pattern longer than {_MAX_PATTERN} characters"
    if _NESTED_QUANTIFIER.search(pattern):
        return f"pattern {pattern[:80]!r} nests quantifiers (it could backtrack for ever)"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"pattern {pattern[:80]!r} is not a regular expression: {exc}"
    return None


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON document, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


class Validate(BaseModel):
    """A validator gate on a generator step: below ``threshold`` confidence, a validator critiques
    the output (PASS/FAIL + issues); on FAIL the generator runs again with the critique, at most
    ``max_rounds`` times, then the step escalates (to an operator, or to a human approval)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str = Field(default="validator", min_length=1)
    threshold: float = Field(default=0.85, ge=0, le=1)
    max_rounds: int = Field(default=3, ge=1, le=10, description="Generator runs at most, the loop's guard.")
    params: dict[str, JsonValue] = Field(default_factory=dict, description="The validator's params.")
    on_exhausted: Literal["escalate", "escalate_to_approval"] = "escalate"


class Step(BaseModel):
    """One step: an agent role (or an approval gate) run once the steps in ``after`` succeeded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=_NAME)
    agent: str | None = Field(default=None, min_length=1)
    approval: Approval | None = None
    after: list[str] = Field(default_factory=list)
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="Step configuration the agent reads (ctx.params)."
    )
    retry: RetryPolicy | None = Field(default=None, description="Overrides the role's and the default policy.")
    time_limit_s: float | None = Field(default=None, gt=0, description="Hard limit: the process is killed.")
    soft_time_limit_s: float | None = Field(default=None, gt=0, description="Soft limit: a retryable error.")
    priority: int | None = Field(
        default=None,
        ge=0,
        le=9,
        description="Celery message priority on the Redis broker: 0 goes first (as messages without one) and 9 "
        "last, in four groups (0-2, 3-5, 6-8, 9); a step of a bulk or background workflow set to 6 yields to "
        "the interactive ones on its queue.",
    )
    validation: Validate | None = Field(
        default=None, alias="validate", description="A validator gate with a critique loop on this step's output."
    )
    when: dict[str, str] | None = Field(
        default=None,
        description='Run only on a router\'s branch: {"route": "bug"} runs this step if the step `route` '
        "(a dependency) chose `bug`; otherwise it is skipped.",
    )
    uses: dict[str, list[str]] | None = Field(
        default=None,
        description="Field-level context: {dependency: [field, ...]}. Only those fields of that dependency's "
        "output reach this step (its prompt and ctx.dependencies); a dependency not named reaches it whole.",
    )
    on_failure: Literal["escalate", "escalate_to_approval"] = Field(
        default="escalate",
        description="When the step will not be retried: wait for an operator (needs_attention), or ask a "
        "human through an approval (approve with `data` as the step's output, or reject the run).",
    )
    map: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$",
        description="Run one member of this step per element of the list at this path in a dependency's "
        'output ("plan.files": the `files` of step `plan`, which must be in `after`). Each member sees its '
        "element as ctx.item and its position as ctx.index; the steps after see the list of results, in "
        "order. At most AGENTCHORD_MAP_MAX_ITEMS members; an empty list completes the step at once.",
    )
    on_member_failure: Literal["escalate", "fail", "continue"] = Field(
        default="escalate",
        description="A map member that will not be retried: wait for an operator (needs_attention), end the "
        'run failed, or continue with {"error": ..., "failed": true} in its place in the list.',
    )

    workflow: str | None = Field(
        default=None,
        pattern=_NAME,
        description="Run a whole workflow as this step (a child run): a built-in or registered workflow's name "
        "(coordinator.register_workflow). Its result is the child's results, {step: output}.",
    )
    input_from: str | None = Field(
        default=None,
        pattern=_NAME,
        description="A child workflow's input: this dependency's output (an object); default: the run's input.",
    )

    @model_validator(mode="after")
    def _agent_or_approval(self) -> Step:
        if sum(x is not None for x in (self.agent, self.approval, self.workflow)) != 1:
            raise InvalidApprovalError(
                self.name,
                "a step needs exactly one of `agent` (a role), `approval` (a human gate) or `workflow` (a child run)",
            )
        if self.input_from is not None and (self.workflow is None or self.input_from not in self.after):
            raise WorkflowSpecError(
                f"step {self.name!r}: `input_from` is for a `workflow` step, and must be in `after`"
            )
        if self.workflow is not None and (self.map or self.validation or self.when):
            raise WorkflowSpecError(f"step {self.name!r}: a `workflow` step cannot be mapped, validated or routed")
        return self


def _check_map(step: Step) -> None:
    source = (step.map or "").split(".", 1)[0]
    if source not in step.after:
        raise InvalidMapError(step.name, f"its path {step.map!r} must start with a step in its `after`")
    if step.agent is None or step.validation is not None:
        raise InvalidMapError(step.name, "only an agent step without a validator can be mapped")


class Workflow(BaseModel):
    """A named DAG of steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str = ""
    version: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Your label for this version of the workflow (runs record it; default: the plan's digest). "
        "A run keeps the plan it started with, whatever is deployed later.",
    )
    handoff: bool = Field(default=False, description="Keep a typed handoff record that agents read and extend.")
    budget: Budget | None = Field(
        default=None, description="Budget of each run (a start's own budget wins; see proj/budget.py)."
    )
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_graph(self) -> Workflow:
        names: set[str] = set()
        for step in self.steps:
            if step.name in names:
                raise DuplicateStepError(step.name)
            names.add(step.name)
        for step in self.steps:
            for dependency in step.after:
                if dependency not in names:
                    raise UnknownDependencyError(step.name, dependency)
        try:
            tuple(TopologicalSorter(self.dependencies()).static_order())
        except GraphCycleError as exc:
            raise CycleError(list(exc.args[1])[::-1]) from None
        for step in self.steps:
            if step.approval is not None:
                _check_gate(self, step.name, step.approval)
            for dependency, fields in (step.uses or {}).items():
                if dependency not in step.after:
                    raise WorkflowSpecError(
                        f"step {step.name!r} `uses` {dependency!r}, which is not in its `after` "
                        f"({', '.join(step.after) or 'none'})"
                    )
                if not fields:
                    raise WorkflowSpecError(f"step {step.name!r} `uses` no field of {dependency!r}: name some")
            if step.map is not None:
                _check_map(step)
            for router in step.when or {}:
                if router not in step.after:
                    raise WorkflowSpecError(
                        f"step {step.name!r} has `when` on {router!r}, which must also be in its `after`"
                    )
        # Fields of roles already registered are checked now, when the workflow is defined.
        self.check_uses(agents.output_fields, known=set(agents.known_roles()))
        return self

    def dependencies(self) -> dict[str, list[str]]:
        return {step.name: list(step.after) for step in self.steps}

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)

    def check_agents(self, known: list[str]) -> None:
        """Raise :class:`UnknownAgentError` for the first step whose agent is not in ``known``."""
        for step in self.steps:
            if step.agent is not None and step.agent not in known:
                raise UnknownAgentError(step.agent, step.name, known)
            if step.validation is not None and step.validation.agent not in known:
                raise UnknownAgentError(step.validation.agent, f"{step.name} (validate)", known)

    def check_uses(self, output_fields: Callable[[str], list[str] | None], known: set[str] | None = None) -> None:
        """Every field a step ``uses`` exists in its dependency's declared output model
        (``output_fields(role)``: that model's field names, None when the role declares none).
        ``known``: check only dependencies run by these roles (the others are checked at start,
        once every agent module is loaded)."""
        for step in self.steps:
            for dependency, fields in (step.uses or {}).items():
                source = self.step(dependency)
                if known is not None and source.agent is not None and source.agent not in known:
                    continue
                declared = output_fields(source.agent) if source.agent else None
                if declared is None:
                    what = f"role {source.agent!r}" if source.agent else "an approval gate"
                    raise WorkflowSpecError(
                        f"step {step.name!r} `uses` fields of {dependency!r}, but {what} declares no output model "
                        "(annotate the role's return type with a pydantic model to name its fields)"
                    )
                unknown = [field for field in fields if field not in declared]
                if unknown:
                    raise WorkflowSpecError(
                        f"step {step.name!r} `uses` {', '.join(map(repr, unknown))} of {dependency!r}, whose output "
                        f"has the fields {', '.join(declared)}"
                    )

    def to_json(self) -> str:
        return self.model_dump_json()


def _check_gate(workflow: Workflow, name: str, gate: Approval) -> None:
    for shown in gate.show or []:
        if shown not in workflow.dependencies():
            raise InvalidApprovalError(name, f"`show` names {shown!r}, which is not a step of this workflow")
    if gate.on_reject is not None:
        branch = next((s for s in workflow.steps if s.name == gate.on_reject), None)
        if branch is None or name not in branch.after:
            raise InvalidApprovalError(
                name, f"`on_reject` must name a step that lists {name!r} in `after`; got {gate.on_reject!r}"
            )
    if gate.data_schema is not None:
        try:
            validator_for(gate.data_schema).check_schema(gate.data_schema)
        except SchemaError as exc:
            raise InvalidApprovalError(name, f"`schema` is not a valid JSON Schema: {exc.message}") from None
        # The API applies it to reviewers' data: it must fetch nothing and match in bounded time.
        for key, item in _walk(gate.data_schema):
            if key in ("$ref", "$dynamicRef", "$recursiveRef") and not str(item).startswith("#"):
                raise InvalidApprovalError(
                    name, f"`schema` {key} {str(item)[:80]!r} is not local: a gate schema must be self-contained"
                )
            patterns = [item] if key == "pattern" else list(item) if key == "patternProperties" else []
            for pattern in patterns:
                if problem := _pattern_problem(str(pattern)):
                    raise InvalidApprovalError(name, f"`schema` {problem}")


def parse_workflow(data: Any, source: str = "<data>") -> Workflow:
    """Build a workflow from parsed YAML/JSON, turning validation errors into one clear error."""
    if not isinstance(data, dict):
        raise SpecFileError(source, f"expected a mapping with 'name' and 'steps', got {type(data).__name__}")
    try:
        return Workflow.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecFileError(source, problems) from None


def load_workflow(path: str | Path) -> Workflow:
    """Load a workflow from a ``.yaml``/``.yml`` or ``.json`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecFileError(str(path), exc.strerror or str(exc)) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecFileError(str(path), f"malformed {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    return parse_workflow(data, str(path))


def builtin_workflows() -> list[str]:
    """Names of the workflows shipped with the package."""
    folder = resources.files("coordinator.workflows")
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_workflow(name: str) -> Workflow:
    """A shipped workflow by name (e.g. ``code_review``). Only the names :func:`builtin_workflows`
    lists resolve: a path, ``..`` or any other name reads nothing and is simply unknown."""
    known = builtin_workflows()
    if name not in known:
        raise UnknownWorkflowError(name, known)
    resource = resources.files("coordinator.workflows") / f"{name}.yaml"
    return parse_workflow(yaml.safe_load(resource.read_text(encoding="utf-8")), f"built-in {name}")


# Workflows a program registered by name, for child steps (``Step(workflow=...)``).
_REGISTERED: dict[str, Workflow] = {}


def register_workflow(workflow: Workflow) -> Workflow:
    """Make ``workflow`` usable as a child step by its name, in this process (the process that
    starts the parent run: the child's spec is stored in the parent's plan)."""
    _REGISTERED[workflow.name] = workflow
    return workflow


def child_workflow(name: str) -> Workflow:
    """A registered workflow by name, else a built-in; :class:`UnknownWorkflowError` otherwise."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    try:
        return builtin_workflow(name)
    except UnknownWorkflowError:
        raise UnknownWorkflowError(name, sorted({*builtin_workflows(), *_REGISTERED})) from None


def child_specs(workflow: Workflow) -> dict[str, str]:
    """Every workflow a run of ``workflow`` can start as a child (its children's too), as spec
    JSON by name; raises :class:`WorkflowSpecError` when child workflows form a cycle."""
    found: dict[str, str] = {}

    def visit(current: Workflow, path: list[str]) -> None:
        for step in current.steps:
            if step.workflow is None:
                continue
            if step.workflow in path:
                cycle = " -> ".join([*path[path.index(step.workflow) :], step.workflow])
                raise WorkflowSpecError(f"child workflows form a cycle: {cycle}")
            child = child_workflow(step.workflow)
            found[step.workflow] = child.to_json()
            visit(child, [*path, step.workflow])

    visit(workflow, [workflow.name])
    return found


def resolve_workflow(name_or_path: str) -> Workflow:
    """A built-in by name, else a YAML/JSON file by path."""
    if Path(name_or_path).suffix in (".yaml", ".yml", ".json"):
        return load_workflow(name_or_path)
    return builtin_workflow(name_or_path)
