"""What an agent body receives: the workflow input and the outputs of the steps it depends on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from agents.llm import ChatModel


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
    _model: ChatModel | None = PrivateAttr(default=None)

    def with_model(self, model: ChatModel) -> StepContext:
        self._model = model
        return self

    @property
    def model(self) -> ChatModel:
        if self._model is None:
            # Direct calls (unit tests, notebooks) get the offline model.
            from agents.offline import OfflineModel

            self._model = OfflineModel()
        return self._model
