"""The HTTP service (FastAPI, served by uvicorn): start runs, follow them, list and resume approvals.

    agentchord api                      # or: uvicorn --factory coordinator.interfaces.api:create_app

Every route but ``/healthz`` and the OpenAPI document needs a bearer token or a Standard
Webhooks signature (see :mod:`coordinator.engine.webhooks`). Client mistakes get a precise 4xx and
change nothing; agentchord errors are translated to HTTP in exactly one place (``_STATUS``).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import redis
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from coordinator.engine.approvals import resume
from coordinator.engine.checkpoints import ApprovalView, get_approval, pending_approvals
from coordinator.engine.operator import abort_run, retry_step, skip_step
from coordinator.engine.specs import Workflow, builtin_workflow
from coordinator.engine.webhooks import authenticate, spend_webhook_id
from coordinator.interfaces.runner import get_run, start
from coordinator.observation.metrics import RegistryCollector
from coordinator.observation.status import RunStatus
from coordinator.observation.timing import RunTimings
from proj.celery import configure
from proj.credentials import Identity
from proj.errors import (
    AgentchordError,
    ApprovalClosedError,
    ApprovalConflictError,
    ApprovalDataError,
    ApprovalNotFoundError,
    AuthenticationError,
    BodyTooLargeError,
    ForbiddenError,
    IdempotencyConflictError,
    MalformedBodyError,
    ReplayedWebhookError,
    RunNotFoundError,
    StepStateError,
    TooManyAuthFailuresError,
    UnknownWorkflowError,
    WorkflowSpecError,
)
from proj.registry import registry_for
from proj.settings import Settings
from proj.tracing import setup_tracing

logger = logging.getLogger(__name__)

# Most specific first; the first match wins.
_STATUS: list[tuple[type[AgentchordError], int]] = [
    (AuthenticationError, 401),
    (BodyTooLargeError, 413),
    (MalformedBodyError, 400),
    (ReplayedWebhookError, 409),
    (TooManyAuthFailuresError, 429),
    (ForbiddenError, 403),
    (ApprovalNotFoundError, 404),
    (RunNotFoundError, 404),
    (UnknownWorkflowError, 404),
    (ApprovalConflictError, 409),
    (IdempotencyConflictError, 409),
    (StepStateError, 409),
    (ApprovalClosedError, 410),
    (ApprovalDataError, 422),
    (WorkflowSpecError, 422),
]


class StartRequest(BaseModel):
    """Start a run: a built-in workflow by name, or a whole spec inline."""

    model_config = ConfigDict(extra="forbid")

    workflow: str | None = Field(default=None, description="Name of a built-in workflow.")
    spec: Workflow | None = Field(default=None, description="An inline workflow spec.")
    input: dict[str, JsonValue] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class StartResponse(BaseModel):
    run_id: str
    state: str
    status_url: str


class RunView(BaseModel):
    status: RunStatus
    timings: RunTimings
    approvals: list[ApprovalView]


class SkipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: JsonValue = Field(description="The failed step's output, as its dependents will see it.")


class AbortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class ResumeRequest(BaseModel):
    """A reviewer's decision."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=10_000)
    data: JsonValue = None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API bound to ``settings`` (from the environment when omitted)."""
    settings = settings or Settings()
    configure(settings)
    setup_tracing(settings)
    registry = registry_for(settings)
    api = FastAPI(
        title="agentchord",
        summary="Start multi-agent workflows, follow them, and resume runs parked at approval gates.",
        version="0.1.0",
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    if not settings.api_tokens and not settings.webhook_secrets:
        logger.warning(
            "the API has no credentials configured (AGENTCHORD_API_TOKENS, AGENTCHORD_WEBHOOK_SECRETS): "
            "every request but /healthz and /metrics will be refused with 401"
        )

    async def raw_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise BodyTooLargeError(settings.max_body_bytes)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                raise BodyTooLargeError(settings.max_body_bytes)
        return bytes(body)

    def caller(request: Request, body: bytes = Depends(raw_body)) -> tuple[Identity, bytes]:
        """Authenticate; return (who, raw body). Runs in the threadpool (it talks to Redis).
        A signed request's webhook-id is spent here only for routes without a body; routes with
        one spend it after the body is valid (``parse_and_spend``), so a bad body burns nothing.
        A client (by address) that fails too often in a minute gets 429 until the minute ends."""
        client = request.client.host if request.client else "unknown"
        if registry.auth_failures(client) >= settings.auth_failures_per_minute:
            raise TooManyAuthFailuresError(settings.auth_failures_per_minute)
        try:
            who = authenticate(request.headers, body, settings, registry, spend=not body)
        except AuthenticationError:
            registry.auth_failures(client, add=True)
            raise
        return who, body

    def parse_and_spend(auth: tuple[Identity, bytes], model: type[BaseModel]) -> Any:
        who, body = auth
        parsed = parse(body, model)
        if body:
            spend_webhook_id(who.name, settings, registry)
        return parsed

    def allow(auth: tuple[Identity, bytes], scope: str, action: str) -> str:
        """The caller's name if its token has ``scope``; else :class:`ForbiddenError` (403)."""
        if scope not in auth[0].scopes:
            raise ForbiddenError(auth[0].name, action)
        return auth[0].name

    @api.exception_handler(AgentchordError)
    async def agentchord_error(_request: Request, exc: AgentchordError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        content: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
        if isinstance(exc, ApprovalConflictError):
            content |= {"decision": exc.decision, "state": exc.state}
        if isinstance(exc, ApprovalDataError):
            content["errors"] = exc.errors
        return JSONResponse(content, status_code=status)

    @api.exception_handler(ValidationError)
    async def body_invalid(_request: Request, exc: ValidationError) -> JSONResponse:
        errors = json.loads(exc.json(include_url=False, include_input=False))
        return JSONResponse({"error": "ValidationError", "detail": "request body is invalid", "errors": errors}, 422)

    @api.exception_handler(redis.ConnectionError)
    async def registry_down(_request: Request, _exc: redis.ConnectionError) -> JSONResponse:
        return JSONResponse({"error": "RegistryUnavailable", "detail": "the Redis registry is unreachable"}, 503)

    def parse(body: bytes, model: type[BaseModel]) -> Any:
        return model.model_validate(strict_json(body or b"null"))

    metrics_registry = CollectorRegistry(auto_describe=False)
    metrics_registry.register(RegistryCollector(registry))

    @api.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus metrics of every worker (aggregated in Redis). No auth: counts only."""
        return PlainTextResponse(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness and Redis reachability."""
        registry.client.ping()
        return {"status": "ok"}

    @api.post("/workflows", status_code=202, response_model=StartResponse)
    def start_workflow(auth: tuple[Identity, bytes] = Depends(caller)) -> StartResponse:
        """Start a workflow run (idempotent with ``idempotency_key``). Scope ``start``."""
        allow(auth, "start", "start runs")
        request: StartRequest = parse_and_spend(auth, StartRequest)
        if (request.workflow is None) == (request.spec is None):
            raise MalformedBodyError("give exactly one of 'workflow' (a built-in name) or 'spec'")
        # Only built-ins by name: a path from a client must never be read from disk.
        workflow = request.spec or builtin_workflow(str(request.workflow))
        run = start(workflow, input=request.input, idempotency_key=request.idempotency_key, settings=settings)
        base = settings.public_url.rstrip("/")
        return StartResponse(run_id=run.id, state=run.status().state, status_url=f"{base}/workflows/{run.id}")

    @api.get("/workflows/{run_id}", response_model=RunView)
    def run_status(run_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> RunView:
        """A run's state, steps, timings and approvals. Scope ``read``."""
        allow(auth, "read", "read runs")
        run = get_run(run_id, settings=settings)
        return RunView(status=run.status(), timings=run.timings(), approvals=run.approvals())

    @api.post("/workflows/{run_id}/steps/{step}/retry", status_code=202)
    def retry_failed_step(run_id: str, step: str, auth: tuple[Identity, bytes] = Depends(caller)) -> dict[str, str]:
        """Operator: run a failed step again (fresh attempts). 409 unless it is failed."""
        retry_step(registry, run_id, step, actor=allow(auth, "operate", "retry steps"))
        return {"run_id": run_id, "step": step, "action": "retry"}

    @api.post("/workflows/{run_id}/steps/{step}/skip", status_code=202)
    def skip_failed_step(run_id: str, step: str, auth: tuple[Identity, bytes] = Depends(caller)) -> dict[str, str]:
        """Operator: give a failed step an output and continue. 409 unless it is failed."""
        actor = allow(auth, "operate", "skip steps")
        request: SkipRequest = parse_and_spend(auth, SkipRequest)
        skip_step(registry, run_id, step, request.output, actor=actor)
        return {"run_id": run_id, "step": step, "action": "skip"}

    @api.post("/workflows/{run_id}/abort")
    def abort(run_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> dict[str, Any]:
        """Operator: end the run failed. ``ended`` is false when it had ended already."""
        actor = allow(auth, "operate", "abort runs")
        request: AbortRequest = parse_and_spend((auth[0], auth[1] or b"{}"), AbortRequest)
        return {"run_id": run_id, "ended": abort_run(registry, run_id, request.reason, actor=actor)}

    @api.post("/workflows/{run_id}/cancel")
    def cancel(run_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> dict[str, Any]:
        """Cancel the run: nothing is dispatched after this; pending approvals close. Scope ``operate``."""
        allow(auth, "operate", "cancel runs")
        return {"run_id": run_id, "cancelled": get_run(run_id, settings=settings).cancel()}

    @api.get("/approvals", response_model=list[ApprovalView])
    def list_approvals(
        response: Response,
        limit: int = Query(default=100, ge=1, le=1000),
        cursor: str | None = Query(default=None, max_length=300),
        auth: tuple[Identity, bytes] = Depends(caller),
    ) -> list[ApprovalView]:
        """Pending approvals, oldest first (by when they were requested), with their context and
        resume URL; at most ``limit``. When there may be more, the ``X-Next-Cursor`` header holds
        the ``cursor`` of the next page."""
        allow(auth, "read", "read approvals")
        views, following = pending_approvals(registry, settings, limit, cursor)
        if following is not None:
            response.headers["X-Next-Cursor"] = following
        return views

    @api.get("/approvals/{approval_id}", response_model=ApprovalView)
    def show_approval(approval_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> ApprovalView:
        allow(auth, "read", "read approvals")
        return get_approval(registry, settings, approval_id)

    @api.post(
        "/approvals/{approval_id}",
        response_model=ApprovalView,
        responses={409: {"description": "already decided; the body names the decision that won"}},
    )
    def resume_approval(approval_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> ApprovalView:
        """Approve or reject. Exactly one decision wins; the others get 409 with the winner."""
        actor = allow(auth, "approve", "decide approvals")
        request: ResumeRequest = parse_and_spend(auth, ResumeRequest)
        return resume(
            registry,
            approval_id,
            request.decision,
            comment=request.comment,
            data=request.data,
            actor=actor,
            check_decider=True,
        )

    return api


# A JSON body nested deeper than this is refused (a deeper one would exhaust the parser's stack).
MAX_JSON_DEPTH = 64


def strict_json(body: bytes) -> Any:
    """Parse a request body as strict JSON: no NaN/Infinity, no number that overflows to
    infinity, no integer longer than Python reads, nesting at most ``MAX_JSON_DEPTH``.
    Anything else is :class:`MalformedBodyError` (400), never a server error."""

    def refuse_constant(name: str) -> Any:
        raise MalformedBodyError(f"{name} is not JSON")

    def finite(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise MalformedBodyError(f"number {text[:40]} is out of range")
        return value

    if _depth(body) > MAX_JSON_DEPTH:
        raise MalformedBodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(body, parse_constant=refuse_constant, parse_float=finite)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedBodyError(str(exc)[:200]) from None
    except ValueError as exc:  # an integer with more digits than int() reads
        raise MalformedBodyError(str(exc)[:200]) from None


def _depth(body: bytes) -> int:
    """How deep brackets nest outside strings (a scan, before any recursive parse)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest
