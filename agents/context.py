"""What an agent body receives: the workflow input and the outputs of the steps it depends on."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from agents.handoff import HandoffRecord, RejectedApproach
from agents.llm import SHARED_CONTEXT_HEADER, ChatModel, Message
from agents.offline import OfflineModel


class StepContext(BaseModel):
    """The context of one step execution.

    ``dependencies`` holds only the outputs of the steps this one declared in ``after``: an agent
    never sees the whole run. ``model`` is the configured chat model, metered for this step.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    step: str
    agent: str
    input: dict[str, Any] = Field(default_factory=dict)
    dependencies: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    attempt: int = Field(default=1, ge=1, description="1 on the first execution of the body, 2 on its retry, ...")
    handoff: HandoffRecord | None = Field(default=None, description="The run's handoff record, if kept.")
    item: Any = Field(default=None, description="A map member's element of the list it was made for.")
    index: int | None = Field(default=None, description="A map member's position in that list (from 0).")
    feedback: list[str] = Field(
        default_factory=list, description="The validator's issues with this step's last candidate (a retry round)."
    )
    _model: ChatModel | None = PrivateAttr(default=None)
    _handoff_patch: dict[str, Any] = PrivateAttr(default_factory=dict)
    _injected: list[str] = PrivateAttr(default_factory=list)
    _emit: Callable[[str, str], None] | None = PrivateAttr(default=None)

    def with_model(self, model: ChatModel, injected: list[str] | None = None) -> StepContext:
        self._model = model
        if injected is not None:
            self._injected = injected
        return self

    def with_emitter(self, emit: Callable[[str, str], None]) -> StepContext:
        self._emit = emit
        return self

    def emit(self, text: str) -> None:
        """Report progress while the step runs (the console shows it under the step, live). Kept
        apart from the step's result: never stored as output, never in another step's prompt."""
        if self._emit is not None:
            self._emit("progress", text)

    def json_prompt(self, fields: dict[str, Any], inject: tuple[str, ...] = ()) -> str:
        """A JSON object for a prompt; the ``inject`` fields (earlier steps' outputs) go in
        through :meth:`inject`, so the tokens they cost are counted as re-injected."""
        # Injected values are JSON-encoded first (a string too), so the prompt stays valid JSON.
        parts = [
            f"{json.dumps(k)}: {self.inject(json.dumps(v, sort_keys=True)) if k in inject else json.dumps(v)}"
            for k, v in fields.items()
        ]
        return "{" + ", ".join(parts) + "}"

    def prompt(
        self,
        instructions: str,
        own: dict[str, Any] | None = None,
        *,
        inject: tuple[str, ...] = (),
        instructions_first: bool = False,
    ) -> list[Message]:
        """The messages of a model call, ordered for a provider's prompt prefix cache: first the
        run's shared context (the workflow input, then the handoff record), identical for every
        step of the run and its reruns; then the role's ``instructions``; then this step's ``own``
        parts (its dependencies' outputs, named in ``inject`` so they count as re-injected).
        ``instructions_first``: a role that must lead with its instructions gives up only its own
        share of the cache."""
        shared: dict[str, Any] = {"input": self.input}
        if self.handoff is not None:
            shared["handoff"] = self.handoff.model_dump(mode="json")
        messages = [
            Message.system(SHARED_CONTEXT_HEADER + json.dumps(shared, sort_keys=True)),
            Message.system(instructions),
            Message.user(self.json_prompt(own or {}, inject)),
        ]
        return [messages[1], messages[0], messages[2]] if instructions_first else messages

    def update_handoff(
        self,
        *,
        hypothesis: str | None = None,
        confidence: float | None = None,
        next_action: str | None = None,
        rejected: list[RejectedApproach] | None = None,
        constraints: list[str] | None = None,
    ) -> None:
        """Extend the run's handoff record when this step's result is stored."""
        for key, value in (("hypothesis", hypothesis), ("confidence", confidence), ("next_action", next_action)):
            if value is not None:
                self._handoff_patch[key] = value
        if rejected:
            self._handoff_patch.setdefault("rejected_approaches", []).extend(r.model_dump() for r in rejected)
        if constraints:
            self._handoff_patch.setdefault("constraints", []).extend(constraints)

    def handoff_patch(self) -> dict[str, Any]:
        return dict(self._handoff_patch)

    def handoff_prompt(self) -> str:
        """The handoff record as prompt text, counted as re-injected context."""
        return self.inject(self.handoff.as_prompt()) if self.handoff else ""

    def inject(self, value: Any) -> str:
        """``value`` (usually a dependency's output) as JSON text for a prompt, counted as
        re-injected context: the tokens a multi-agent system pays to hand work over."""
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        self._injected.append(text)
        return text

    @property
    def model(self) -> ChatModel:
        if self._model is None:
            # Direct calls (unit tests, notebooks) get the offline model.
            self._model = OfflineModel()
        return self._model
