"""One error format for the whole HTTP API: RFC 9457 problem details (``application/problem+json``).

Every 4xx and 5xx the API answers is a :class:`Problem`. Its ``type`` names the kind of problem
and is the same string a Python caller can read off the exception
(:func:`problem_type` of an :class:`~proj.errors.AgentchordError`), so a client written against
the HTTP API and one using the Python API branch on the same names.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from proj.errors import PROBLEM_TYPE_PREFIX, problem_slug

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One field that failed validation: where (``loc``, a path into the request) and why."""

    loc: list[str | int] = Field(description="Path to the field: a request part (body, query, path, data), then keys.")
    msg: str
    type: str = Field(description="A machine-readable reason, e.g. 'missing', 'string_type', 'json_schema'.")


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:agentchord:problem:run-not-found",
                    "title": "Run not found",
                    "status": 404,
                    "detail": "no run 'wf-123' in the registry (never started, or expired)",
                }
            ]
        }
    )

    type: str = Field(description="The kind of problem: urn:agentchord:problem:<name>, stable across versions.")
    title: str = Field(description="A short summary of the kind of problem (the same for every occurrence).")
    status: int = Field(description="The HTTP status code of this response.")
    detail: str = Field(description="What went wrong in this occurrence, for a person.")
    errors: list[FieldError] | None = Field(default=None, description="Each invalid field, when the body or query was.")
    decision: str | None = Field(default=None, description="approval-conflict only: the decision that won.")
    state: str | None = Field(default=None, description="approval-conflict only: the approval's state now.")


def problem_type(error: type[BaseException] | BaseException) -> str:
    """The problem ``type`` of an exception: ``RunNotFoundError`` -> ``urn:agentchord:problem:run-not-found``
    (the same as :meth:`proj.errors.AgentchordError.problem_type`)."""
    return PROBLEM_TYPE_PREFIX + problem_slug(error if isinstance(error, type) else type(error))


def problem_title(error: type[BaseException] | BaseException) -> str:
    """The problem ``title``: the class name in words (``RunNotFoundError`` -> ``Run not found``)."""
    words = problem_slug(error if isinstance(error, type) else type(error)).replace("-", " ")
    return words[:1].upper() + words[1:]


def problem_response(
    status: int,
    type_: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extensions: str,
) -> JSONResponse:
    """A problem details response (``type_``: a full problem type, see :func:`problem_type`)."""
    body = Problem(
        type=type_,
        title=title,
        status=status,
        detail=detail,
        errors=None if errors is None else [FieldError.model_validate(e) for e in errors],
        **extensions,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def field_errors(pydantic_errors: list[Any], prefix: str | None = None) -> list[dict[str, Any]]:
    """Pydantic's error list as :class:`FieldError` dicts (no input echoed back: it may be secret)."""
    return [
        {
            "loc": ([prefix] if prefix else []) + [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in pydantic_errors
    ]
