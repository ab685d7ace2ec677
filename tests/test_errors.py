"""Every exception survives Celery's JSON result backend round trip."""

from __future__ import annotations

import pytest

import proj.errors as errors
from proj.celery import app

SAMPLES: list[errors.AgentchordError] = [
    errors.ConfigurationError("no Redis"),
    errors.WorkflowSpecError("bad"),
    errors.UnknownAgentError("reviwer", "review", ["merger", "reviewer"]),
    errors.DuplicateStepError("a"),
    errors.UnknownDependencyError("b", "x"),
    errors.CycleError(["a", "b", "a"]),
    errors.InvalidInputError("not JSON"),
    errors.InvalidStartOptionError("budget", "max_cost_usd: Input should be greater than 0"),
    errors.BudgetExceededError("r1", "10 model calls made (limit 10)", True),
    errors.SpecFileError("wf.yaml", "malformed"),
    errors.UnknownWorkflowError("nope", ["code_review"]),
    errors.RunNotFoundError("r1"),
    errors.RunTimeoutError("r1", 1.5, "running"),
    errors.RunFailedError("r1", "failed", "boom"),
    errors.StepFailedError("r1", "review", "ValueError: boom"),
    errors.InvalidApprovalError("approve", "bad schema"),
    errors.ApprovalError("x"),
    errors.ApprovalNotFoundError("r1.approve"),
    errors.ApprovalConflictError("r1.approve", "approved", "approve"),
    errors.ApprovalClosedError("r1.approve", "run cancelled"),
    errors.ApprovalDataError(
        "r1.approve", [{"loc": ["data"], "msg": "'x' is a required property", "type": "required"}]
    ),
    errors.StepNotFoundError("r1", "nope", ["a", "b"]),
    errors.InvalidCursorError("nonsense"),
    errors.RequestRejectedError("x"),
    errors.AuthenticationError("invalid signature"),
    errors.ReplayedWebhookError("msg_1"),
    errors.BodyTooLargeError(65536),
    errors.RunNeedsAttentionError("r1", "needs_attention", "step 'a' failed"),
    errors.StepStateError("r1", "a", "retry", "succeeded"),
    errors.RerunNotAllowedError("r1", "it is running"),
    errors.InvalidMapError("each", "its path 'x' must start with a step in its `after`"),
    errors.MapItemsError("each", "'plan.files' is a str, not a list"),
    errors.TransientError("provider busy"),
    errors.PermanentError("bad input"),
    errors.TransientModelError("http://llm", "HTTP 429", 2.0),
    errors.PermanentModelError("http://llm", "HTTP 400: bad request"),
    errors.MalformedBodyError("Expecting value: line 1 column 1 (char 0)"),
    errors.TooManyAuthFailuresError(30),
    errors.ForbiddenError("reader", "start runs"),
    errors.IdempotencyConflictError("pr-42", "a1b2c3"),
]


def test_every_exception_class_has_a_sample() -> None:
    classes = {
        obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, errors.AgentchordError)
    }
    assert classes == {type(sample) for sample in SAMPLES} | {errors.AgentchordError}


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: type(e).__name__)
def test_exception_round_trips_through_the_json_result_backend(exc: errors.AgentchordError) -> None:
    backend = app.backend
    rebuilt = backend.exception_to_python(backend.prepare_exception(exc, serializer="json"))
    assert type(rebuilt) is type(exc)
    assert str(rebuilt) == str(exc)
    assert isinstance(rebuilt, errors.AgentchordError)
