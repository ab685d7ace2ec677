"""The HTTP service (FastAPI, served by uvicorn): start runs, follow them, list and resume approvals.

    agentchord api                      # or: uvicorn --factory coordinator.interfaces.api:create_app

Every route but ``/healthz``, ``/metrics`` and the documentation needs a bearer token or a Standard
Webhooks signature (see :mod:`coordinator.engine.webhooks`). ``/metrics`` is public by decision:
it holds counts and durations only, no run ids, inputs or outputs, and Prometheus scrapers
rarely carry credentials (SECURITY.md says the same; publish the port to your scraper only).

The document at ``/openapi.json`` is the contract: every route declares its request body (the
pydantic models below, though handlers read the raw bytes: a webhook signature covers exactly
those) and every status it answers. Every error is an RFC 9457 problem (:mod:`.problems`);
agentchord errors are translated to HTTP in exactly one place (``_STATUS``). Checks run in one
order on every route: body size (413), credentials (401/429), scope (403), the named resource
(404), then the body (400/422), then the resource's state (409/410).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import redis
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from agents import known_roles, load_agent_modules
from coordinator.engine.approvals import resume
from coordinator.engine.checkpoints import ApprovalView, get_approval, pending_approvals
from coordinator.engine.operator import abort_run, require_step, retry_step, skip_step
from coordinator.engine.specs import Workflow, builtin_workflow
from coordinator.engine.webhooks import authenticate, spend_webhook_id
from coordinator.interfaces.console import mount_console
from coordinator.interfaces.problems import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    field_errors,
    problem_response,
    problem_title,
    problem_type,
)
from coordinator.interfaces.runner import Run, get_run, rerun, start
from coordinator.observation.live import follow
from coordinator.observation.metrics import RegistryCollector
from coordinator.observation.roles import RoleView, role_views
from coordinator.observation.status import RunStatus
from coordinator.observation.timing import RunTimings
from proj.budget import Budget
from proj.celery import configure
from proj.credentials import Identity
from proj.errors import (
    PROBLEM_TYPE_PREFIX,
    AgentchordError,
    ApprovalClosedError,
    ApprovalConflictError,
    ApprovalDataError,
    ApprovalNotFoundError,
    AuthenticationError,
    BodyTooLargeError,
    ForbiddenError,
    IdempotencyConflictError,
    InvalidCursorError,
    MalformedBodyError,
    ReplayedWebhookError,
    RerunNotAllowedError,
    RunNotFoundError,
    StepNotFoundError,
    StepStateError,
    TooManyAuthFailuresError,
    UnknownWorkflowError,
    WorkflowSpecError,
)
from proj.registry import registry_for
from proj.settings import TENANT_PATTERN, Settings
from proj.tracing import setup_tracing

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

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
    (StepNotFoundError, 404),
    (UnknownWorkflowError, 404),
    (ApprovalConflictError, 409),
    (IdempotencyConflictError, 409),
    (StepStateError, 409),
    (RerunNotAllowedError, 409),
    (ApprovalClosedError, 410),
    (ApprovalDataError, 422),
    (InvalidCursorError, 422),
    (WorkflowSpecError, 422),
]

# What each status means on this API; a route adds its own words where they say more.
_MEANING: dict[int, str] = {
    400: "The body is not strict JSON.",
    401: "Missing, invalid or expired credentials (a bearer token or a Standard Webhooks signature).",
    403: "The token lacks the scope this route needs.",
    404: "No such resource.",
    409: "A replayed webhook-id: a signed request is accepted once.",
    410: "The approval's run has ended.",
    413: "The body is larger than AGENTCHORD_MAX_BODY_BYTES.",
    422: "The body or a query parameter is invalid; `errors` lists each field.",
    429: "Too many failed authentications from this address this minute.",
    503: "The Redis registry is unreachable.",
}
# Every authenticated route can answer these.
_GUARDED = (401, 403, 409, 413, 429, 503)


def _problems(*codes: int, **notes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error ``codes``, each an RFC 9457 problem. ``notes``: ``s409="..."``
    replaces the general meaning of a status where the route can say more."""
    return {
        code: {
            "description": notes.get(f"s{code}", _MEANING[code]),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in sorted(set(codes) | set(_GUARDED))
    }


def _body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``model`` (the handler reads raw bytes)."""
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": reference}}}}


class StartRequest(BaseModel):
    """Start a run: a built-in workflow by name, or a whole spec inline."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"workflow": "code_review", "input": {"code": "def f(x): return x"}, "idempotency_key": "pr-42"}
            ]
        },
    )

    workflow: str | None = Field(default=None, description="Name of a built-in workflow.", max_length=200)
    spec: Workflow | None = Field(default=None, description="An inline workflow spec.")
    input: dict[str, JsonValue] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    budget: Budget | None = Field(
        default=None, description="Caps the run's model spend (else the workflow's, else the default budget)."
    )

    @model_validator(mode="after")
    def _one_workflow(self) -> StartRequest:
        if (self.workflow is None) == (self.spec is None):
            raise ValueError("give exactly one of 'workflow' (a built-in name) or 'spec'")
        return self


class StartResponse(BaseModel):
    run_id: str
    state: str
    status_url: str


class RunView(BaseModel):
    status: RunStatus
    timings: RunTimings
    approvals: list[ApprovalView]


class SkipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"output": {"tests": []}}]})

    output: JsonValue = Field(description="The failed step's output, as its dependents will see it.")


class AbortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "bad input"}]})

    reason: str = Field(default="", max_length=2000)


class ResumeRequest(BaseModel):
    """A reviewer's decision."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"decision": "approve", "comment": "ship it", "data": {"note": "ok"}}]},
    )

    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=10_000)
    data: JsonValue = None


class RerunRequest(BaseModel):
    """Rerun a run from a step: the steps before it whose inputs are unchanged are reused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"from_step": "tests", "params": {"tests": {"framework": "pytest"}}}]},
    )

    from_step: str = Field(description="The step to run again; every step after it runs again too.", max_length=200)
    input: dict[str, JsonValue] | None = Field(default=None, description="A new input (default: the run's own).")
    params: dict[str, dict[str, JsonValue]] | None = Field(
        default=None, description="Params to change, per step: {step: {param: value}}."
    )


class StepActionResponse(BaseModel):
    run_id: str
    step: str
    action: Literal["retry", "skip"]


class AbortResponse(BaseModel):
    run_id: str
    ended: bool = Field(description="False when the run had ended already.")


class CancelResponse(BaseModel):
    run_id: str
    cancelled: bool = Field(description="False when the run had ended already.")


class Health(BaseModel):
    status: Literal["ok"]


# One Server-Sent Event of GET /workflows/{run_id}/events: `data` is the event as JSON
# ({"type", "at", ...fields}); `id` is what Last-Event-ID takes; the first entry only sets `retry`.
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer"},
    },
}

# Request bodies the handlers parse themselves: the document declares them from these models.
_BODY_MODELS: tuple[type[BaseModel], ...] = (StartRequest, SkipRequest, AbortRequest, ResumeRequest, RerunRequest)
_PUBLIC_PATHS = ("/healthz", "/metrics")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API bound to ``settings`` (from the environment when omitted)."""
    settings = settings or Settings()
    configure(settings)
    setup_tracing(settings)
    registry = registry_for(settings)
    load_agent_modules(settings.agent_modules)  # the roles /roles lists and inline specs name
    api = FastAPI(
        title="agentchord",
        summary="Start multi-agent workflows, follow them, and resume runs parked at approval gates.",
        version="0.1.0",
        # Served below from assets in the package (offline); the document only when enabled.
        docs_url=None,
        redoc_url=None,
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
        parsed = model.model_validate(strict_json(body or b"null"))
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
        extensions: dict[str, str] = {}
        if isinstance(exc, ApprovalConflictError):
            extensions = {"decision": exc.decision, "state": exc.state}
        headers = {"Retry-After": "60"} if isinstance(exc, TooManyAuthFailuresError) else None
        errors = exc.errors if isinstance(exc, ApprovalDataError) else None
        if isinstance(exc, InvalidCursorError):
            errors = [{"loc": ["query", "cursor"], "msg": str(exc), "type": "invalid_cursor"}]
        return problem_response(
            status, problem_type(exc), problem_title(exc), str(exc), errors=errors, headers=headers, **extensions
        )

    @api.exception_handler(ValidationError)
    async def body_invalid(_request: Request, exc: ValidationError) -> JSONResponse:
        errors = field_errors(exc.errors(include_url=False, include_input=False), prefix="body")
        return problem_response(422, problem_type(exc), "Request invalid", "the request body is invalid", errors=errors)

    @api.exception_handler(RequestValidationError)
    async def request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(list(exc.errors()))
        return problem_response(
            422, problem_type(ValidationError), "Request invalid", "the request is invalid", errors=errors
        )

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrase = HTTPStatus(exc.status_code).phrase
        slug = phrase.lower().replace(" ", "-")
        return problem_response(
            exc.status_code, PROBLEM_TYPE_PREFIX + slug, phrase, str(exc.detail), headers=dict(exc.headers or {})
        )

    @api.exception_handler(redis.ConnectionError)
    async def registry_down(_request: Request, _exc: redis.ConnectionError) -> JSONResponse:
        detail = "the Redis registry is unreachable"
        return problem_response(503, PROBLEM_TYPE_PREFIX + "registry-unavailable", "Registry unavailable", detail)

    metrics_registry = CollectorRegistry(auto_describe=False)
    metrics_registry.register(RegistryCollector(registry))

    @api.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **_public_problems(503)},
    )
    def metrics() -> PlainTextResponse:
        """Prometheus metrics of every worker (aggregated in Redis). Public: counts and durations only."""
        return PlainTextResponse(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    def tenant_of(auth: tuple[Identity, bytes]) -> str | None:
        """Over HTTP the tenant is the token's name: a caller cannot spend another tenant's slots."""
        return auth[0].name if TENANT_PATTERN.fullmatch(auth[0].name) else None

    def started(run: Run) -> StartResponse:
        base = settings.public_url.rstrip("/")
        return StartResponse(run_id=run.id, state=run.status().state, status_url=f"{base}/workflows/{run.id}")

    @api.get("/healthz", response_model=Health, responses=_public_problems(503))
    def healthz() -> Health:
        """Liveness and Redis reachability."""
        registry.client.ping()
        return Health(status="ok")

    @api.post(
        "/workflows",
        status_code=202,
        response_model=StartResponse,
        openapi_extra=_body(StartRequest),
        responses=_problems(
            400,
            404,
            409,
            422,
            s400="The body is not strict JSON.",
            s404="No built-in workflow of that name.",
            s409="The idempotency key started a run with another workflow or input; or a replayed webhook-id.",
            s422="The body is invalid (or names neither or both of `workflow` and `spec`), or the inline spec is "
            "(unknown agent, cycle, ...).",
        ),
    )
    def start_workflow(auth: tuple[Identity, bytes] = Depends(caller)) -> StartResponse:
        """Start a workflow run (idempotent with ``idempotency_key``). Scope ``start``."""
        allow(auth, "start", "start runs")
        request: StartRequest = parse_and_spend(auth, StartRequest)
        # Only built-ins by name: a path from a client must never be read from disk.
        workflow = request.spec or builtin_workflow(str(request.workflow))
        run = start(
            workflow,
            input=request.input,
            idempotency_key=request.idempotency_key,
            budget=request.budget,
            tenant=tenant_of(auth),
            settings=settings,
        )
        return started(run)

    @api.get("/workflows/{run_id}", response_model=RunView, responses=_problems(404, s404="No such run."))
    def run_status(run_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> RunView:
        """A run's state, steps, timings and approvals. Scope ``read``."""
        allow(auth, "read", "read runs")
        run = get_run(run_id, settings=settings)
        return RunView(status=run.status(), timings=run.timings(), approvals=run.approvals())

    step_notes = {
        "s404": "No such run, or no such step in it.",
        "s409": "The step is not failed; or a replayed webhook-id.",
    }

    @api.get(
        "/workflows/{run_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: one per event of the run's log, `id` resumable with "
                "`Last-Event-ID`; the stream ends when the run has ended (or after AGENTCHORD_SSE_MAX_S).",
                "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            },
            **_problems(404, s404="No such run."),
        },
    )
    def run_events(run_id: str, request: Request, auth: tuple[Identity, bytes] = Depends(caller)) -> StreamingResponse:
        """Follow a run's events live. Scope ``read``."""
        allow(auth, "read", "read runs")
        get_run(run_id, settings=settings)  # 404 before the stream starts
        stream = follow(registry, run_id, request.headers.get("last-event-id"), settings.sse_max_s)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"cache-control": "no-store"})

    @api.post(
        "/workflows/{run_id}/rerun",
        status_code=202,
        response_model=StartResponse,
        openapi_extra=_body(RerunRequest),
        responses=_problems(
            400,
            404,
            409,
            422,
            s404="No such run, or no such step in it.",
            s409="The run has not ended (rerun an ended run), or its plan expired; or a replayed webhook-id.",
            s422="The body is invalid, or `params` names a step the workflow does not have.",
        ),
    )
    def rerun_run(run_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> StartResponse:
        """Start a new run of an ended run's workflow from ``from_step``, reusing the stored outputs
        of the steps before it whose inputs did not change (no model call for them). Scope ``start``."""
        allow(auth, "start", "start runs")
        request: RerunRequest = parse_and_spend(auth, RerunRequest)
        run = rerun(
            run_id, request.from_step, input=request.input, params=request.params, tenant=tenant_of(auth),
            settings=settings,
        )  # fmt: skip
        return started(run)

    @api.post(
        "/workflows/{run_id}/steps/{step}/retry",
        status_code=202,
        response_model=StepActionResponse,
        responses=_problems(404, 409, **step_notes),
    )
    def retry_failed_step(run_id: str, step: str, auth: tuple[Identity, bytes] = Depends(caller)) -> StepActionResponse:
        """Operator: run a failed step again (fresh attempts). 409 unless it is failed. Scope ``operate``."""
        retry_step(registry, run_id, step, actor=allow(auth, "operate", "retry steps"))
        return StepActionResponse(run_id=run_id, step=step, action="retry")

    @api.post(
        "/workflows/{run_id}/steps/{step}/skip",
        status_code=202,
        response_model=StepActionResponse,
        openapi_extra=_body(SkipRequest),
        responses=_problems(400, 404, 409, 422, **step_notes),
    )
    def skip_failed_step(run_id: str, step: str, auth: tuple[Identity, bytes] = Depends(caller)) -> StepActionResponse:
        """Operator: give a failed step an output and continue. 409 unless it is failed. Scope ``operate``."""
        actor = allow(auth, "operate", "skip steps")
        require_step(registry, run_id, step)
        request: SkipRequest = parse_and_spend(auth, SkipRequest)
        skip_step(registry, run_id, step, request.output, actor=actor)
        return StepActionResponse(run_id=run_id, step=step, action="skip")

    @api.post(
        "/workflows/{run_id}/abort",
        response_model=AbortResponse,
        openapi_extra=_body(AbortRequest, required=False),
        responses=_problems(400, 404, 422, s404="No such run."),
    )
    def abort(run_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> AbortResponse:
        """Operator: end the run failed. ``ended`` is false when it had ended already. Scope ``operate``."""
        actor = allow(auth, "operate", "abort runs")
        require_step(registry, run_id)
        request: AbortRequest = parse_and_spend((auth[0], auth[1] or b"{}"), AbortRequest)
        return AbortResponse(run_id=run_id, ended=abort_run(registry, run_id, request.reason, actor=actor))

    @api.post(
        "/workflows/{run_id}/cancel", response_model=CancelResponse, responses=_problems(404, s404="No such run.")
    )
    def cancel(run_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> CancelResponse:
        """Cancel the run: nothing is dispatched after this; pending approvals close. Scope ``operate``."""
        allow(auth, "operate", "cancel runs")
        return CancelResponse(run_id=run_id, cancelled=get_run(run_id, settings=settings).cancel())

    @api.get("/roles", response_model=list[RoleView], responses=_problems())
    def list_roles(auth: tuple[Identity, bytes] = Depends(caller)) -> list[RoleView]:
        """Each role's queue: live workers (by heartbeat), concurrency, tasks in flight, messages
        waiting and how long the oldest has waited. Scope ``read``."""
        allow(auth, "read", "read roles")
        return role_views(registry, known_roles())

    @api.get("/approvals", response_model=list[ApprovalView], responses=_problems(422))
    def list_approvals(
        response: Response,
        limit: int = Query(default=100, ge=1, le=1000),
        cursor: str | None = Query(default=None, max_length=300),
        auth: tuple[Identity, bytes] = Depends(caller),
    ) -> list[ApprovalView]:
        """Pending approvals, oldest first (by when they were requested), with their context and
        resume URL; at most ``limit``. When there may be more, the ``X-Next-Cursor`` header holds
        the ``cursor`` of the next page. Scope ``read``."""
        allow(auth, "read", "read approvals")
        views, following = pending_approvals(registry, settings, limit, cursor)
        if following is not None:
            response.headers["X-Next-Cursor"] = following
        return views

    @api.get(
        "/approvals/{approval_id}", response_model=ApprovalView, responses=_problems(404, s404="No such approval.")
    )
    def show_approval(approval_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> ApprovalView:
        """One approval, pending or decided. Scope ``read``."""
        allow(auth, "read", "read approvals")
        return get_approval(registry, settings, approval_id)

    @api.post(
        "/approvals/{approval_id}",
        response_model=ApprovalView,
        openapi_extra=_body(ResumeRequest),
        responses=_problems(
            400,
            404,
            409,
            410,
            422,
            s404="No such approval.",
            s409="Already decided (the problem's `decision` and `state` name the winner), or a replayed webhook-id.",
            s422="The body is invalid, or `data` fails the gate's schema (`errors` lists each violation).",
        ),
    )
    def resume_approval(approval_id: str, auth: tuple[Identity, bytes] = Depends(caller)) -> ApprovalView:
        """Approve or reject. Exactly one decision wins; the others get 409 with the winner. Scope ``approve``."""
        actor = allow(auth, "approve", "decide approvals")
        get_approval(registry, settings, approval_id)  # 404 before the body is read
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

    if settings.api_docs:
        _serve_docs(api)
    mount_console(api, settings, registry)
    api.openapi = lambda: _contract(api)  # type: ignore[method-assign]
    return api


def _public_problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {
            "description": _MEANING[code],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }


def _contract(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: FastAPI's, plus the body models and the problem schema (handlers
    that read raw bytes do not teach FastAPI their models) and how each route authenticates."""
    if api.openapi_schema:
        return api.openapi_schema
    document = get_openapi(title=api.title, version=api.version, summary=api.summary, routes=api.routes)
    _, definitions = models_json_schema(
        [(model, "validation") for model in _BODY_MODELS] + [(Problem, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        schemas.setdefault(name, definition)
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "AGENTCHORD_API_TOKENS (name:scopes:secret)."},
        "webhookSignature": {
            "type": "apiKey",
            "in": "header",
            "name": "webhook-signature",
            "description": "Standard Webhooks signature with AGENTCHORD_WEBHOOK_SECRETS (plus webhook-id, -timestamp).",
        },
    }
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            # FastAPI declares its own 422 on every route with parameters; a route here answers
            # 422 only where it says so, and then as a problem.
            if "HTTPValidationError" in json.dumps(operation["responses"].get("422", {})):
                del operation["responses"]["422"]
            operation["security"] = [] if path in _PUBLIC_PATHS else [{"bearer": []}, {"webhookSignature": []}]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    api.openapi_schema = document
    return document


def _serve_docs(api: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from assets vendored in the package: no CDN, so they
    render on machines without internet (see static/README.md for versions)."""
    api.mount("/docs-assets", StaticFiles(directory=STATIC), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="agentchord API",
            swagger_js_url="/docs-assets/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/docs-assets/swagger-ui/favicon-32x32.png",
        )

    @api.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="agentchord API",
            redoc_js_url="/docs-assets/redoc/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )


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
