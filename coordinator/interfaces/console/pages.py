"""The web console's pages at ``/ui``: login, the approvals inbox, an approval's form, runs and a
run's live page. Server-rendered (Jinja2, autoescaped: an agent's output is text, never markup)
with a little plain JavaScript for the live event stream; every asset is served from the package.

Every decision goes through the same resume path as the webhook (:func:`resume`), and every
operator action through the same functions as the API and the CLI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from coordinator.engine.approvals import resume
from coordinator.engine.checkpoints import get_approval, pending_approvals
from coordinator.engine.links import LINK_ACTOR, link_spent, read_link, spend_link
from coordinator.engine.operator import abort_run, retry_step, skip_step
from coordinator.interfaces.console.forms import data_from_form, fields_of
from coordinator.interfaces.console.session import COOKIE, Session, Sessions
from coordinator.interfaces.runner import get_run
from coordinator.observation.live import follow, sse_id
from coordinator.observation.report import dag_svg, gantt_svg
from proj.credentials import identify
from proj.errors import (
    AgentchordError,
    ApprovalClosedError,
    ApprovalConflictError,
    ApprovalDataError,
    ApprovalNotFoundError,
    ForbiddenError,
    RunNotFoundError,
    StepStateError,
)
from proj.registry import TERMINAL_STATES, Registry
from proj.settings import Settings

HERE = Path(__file__).resolve().parent
_STATE_OF_RUNS = (
    "queued",
    "running",
    "waiting_approval",
    "needs_attention",
    "succeeded",
    "failed",
    "cancelled",
    "rejected",
    "budget_exceeded",
)


def mount_console(api: FastAPI, settings: Settings, registry: Registry) -> None:
    """Serve the console at ``/ui`` on ``api``."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["pretty"] = lambda value: json.dumps(
        value, indent=2, sort_keys=True, default=str, ensure_ascii=False
    )
    templates.env.filters["compact"] = lambda value: json.dumps(value, sort_keys=True, ensure_ascii=False)
    templates.env.filters["ago"] = lambda at: _duration(time.time() - float(at)) if at else "-"
    templates.env.filters["left"] = lambda at: _duration(float(at) - time.time()) if at else "-"
    sessions = Sessions(settings)
    api.state.console_sessions = sessions
    api.mount("/ui/assets", StaticFiles(directory=HERE / "assets"), name="console-assets")

    def page(request: Request, name: str, session: Session | None, code: int = 200, **values: Any) -> HTMLResponse:
        context = {"session": session, "csrf": session.csrf if session else "", **values}
        return templates.TemplateResponse(request, name, context, status_code=code)

    @api.exception_handler(_LoginRequired)
    async def login_required(_request: Request, exc: _LoginRequired) -> Response:
        return exc.response

    async def form_of(request: Request, session: Session) -> dict[str, str] | Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        if not sessions.csrf_ok(session, request, form.get("csrf", "")):
            return Response("the form's CSRF token is missing or wrong", status_code=403, media_type="text/plain")
        return form

    @api.get("/ui", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/approvals", status_code=303)

    @api.get("/ui/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/ui/approvals") -> HTMLResponse:
        return page(request, "login.html", None, next=_local(next), error="")

    @api.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        client = request.client.host if request.client else "unknown"
        if registry.auth_failures(client) >= settings.auth_failures_per_minute:
            return page(request, "login.html", None, 429, next="/ui/approvals", error="Too many failed logins.")
        who = identify(str(form.get("token", "")), settings.tokens)
        if who is None:
            registry.auth_failures(client, add=True)
            return page(
                request, "login.html", None, 401, next=_local(str(form.get("next", ""))), error="Unknown token."
            )
        response = RedirectResponse(_local(str(form.get("next", ""))), status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.issue(who),
            max_age=settings.console_session_ttl_s,
            httponly=True,
            samesite="strict",
            secure=sessions.secure(),
            path="/",
        )
        return response

    @api.post("/ui/logout", include_in_schema=False)
    def logout() -> RedirectResponse:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @api.get("/ui/approvals", include_in_schema=False)
    def inbox(request: Request, session: SignedIn) -> Response:
        views, _ = pending_approvals(registry, settings, 200, None)
        return page(request, "inbox.html", session, approvals=views, now=time.time())

    @api.get("/ui/approvals/{approval_id}", include_in_schema=False)
    def approval_page(request: Request, approval_id: str, session: SignedIn) -> Response:
        try:
            view = get_approval(registry, settings, approval_id)
        except ApprovalNotFoundError as exc:
            return page(request, "message.html", session, 404, title="Not found", message=str(exc))
        return page(request, "approval.html", session, view=view, fields=fields_of(view.data_schema), errors=[])

    @api.post("/ui/approvals/{approval_id}", include_in_schema=False)
    async def decide(request: Request, approval_id: str, session: SignedIn) -> Response:
        form = await form_of(request, session)
        if not isinstance(form, dict):
            return form
        try:
            view = get_approval(registry, settings, approval_id)
        except ApprovalNotFoundError as exc:
            return page(request, "message.html", session, 404, title="Not found", message=str(exc))
        if "approve" not in session.who.scopes:
            return page(request, "message.html", session, 403, title="Forbidden", message="Your token cannot decide.")
        outcome = _decide(request, session, view, form, session.who.name)
        if outcome is not None:
            return outcome
        return RedirectResponse(f"/ui/runs/{view.run_id}", status_code=303)

    @api.get("/ui/decide/{link}", include_in_schema=False)
    def link_page(request: Request, link: str) -> Response:
        """An approval opened from a notification's decision link: no login, this approval only."""
        claim = read_link(settings, link)
        if claim is None or link_spent(registry, claim):
            return page(request, "message.html", None, 410, title="Link expired", message=_LINK_GONE)
        try:
            view = get_approval(registry, settings, claim.approval_id)
        except ApprovalNotFoundError as exc:
            return page(request, "message.html", None, 404, title="Not found", message=str(exc))
        fields = fields_of(view.data_schema)
        return page(request, "approval.html", None, view=view, fields=fields, errors=[], action=request.url.path)

    @api.post("/ui/decide/{link}", include_in_schema=False)
    async def decide_by_link(request: Request, link: str) -> Response:
        claim = read_link(settings, link)
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
            return Response("a form from another site", status_code=403, media_type="text/plain")
        if claim is None or link_spent(registry, claim):
            return page(request, "message.html", None, 410, title="Link expired", message=_LINK_GONE)
        form = {key: str(value) for key, value in (await request.form()).items()}
        try:
            view = get_approval(registry, settings, claim.approval_id)
        except ApprovalNotFoundError as exc:
            return page(request, "message.html", None, 404, title="Not found", message=str(exc))
        outcome = _decide(request, None, view, form, LINK_ACTOR, action=request.url.path)
        if outcome is None:
            spend_link(registry, claim)
            return page(request, "message.html", None, 200, title="Thank you", message="Your decision was recorded.")
        return outcome

    def _decide(
        request: Request, session: Session | None, view: Any, form: dict[str, str], actor: str, action: str = ""
    ) -> Response | None:
        """Decide ``view`` from a submitted form through the one resume path; None when it was
        decided, else the page that says why not (schema errors, the winner, a closed run)."""
        decision: Literal["approve", "reject"] = "reject" if form.get("decision") == "reject" else "approve"
        data = data_from_form(view.data_schema, form) if decision == "approve" else None
        try:
            resume(registry, view.id, decision, comment=form.get("comment", "")[:10_000], data=data, actor=actor,
                   check_decider=True)  # fmt: skip
        except ApprovalDataError as exc:
            fields = fields_of(view.data_schema)
            return page(
                request, "approval.html", session, 422, view=view, fields=fields, errors=exc.errors, action=action
            )
        except ApprovalConflictError:
            # Exactly one decision wins: show who decided, and when.
            current = get_approval(registry, settings, view.id)
            return page(request, "approval.html", session, 409, view=current, fields=[], errors=[], lost=True)
        except (ApprovalClosedError, ForbiddenError) as exc:
            return page(request, "message.html", session, 409, title="Not decided", message=str(exc))
        return None

    @api.get("/ui/runs", include_in_schema=False)
    def runs_page(
        request: Request, session: SignedIn, state: str = "", workflow: str = "", find: str = "", cursor: str = ""
    ) -> Response:
        if find.strip():
            wanted = find.strip()
            run_id = wanted if registry.run_record(wanted) else registry.run_for_idempotency_key(wanted)
            if run_id is None:
                return page(request, "message.html", session, 404, title="Not found",
                            message=f"no run with id or idempotency key {wanted!r}")  # fmt: skip
            return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)
        try:
            rows, following = registry.runs_page(50, cursor or None, state=state, workflow=workflow)
        except ValueError:
            return page(request, "message.html", session, 400, title="Bad cursor", message="That page link is broken.")
        return page(
            request, "runs.html", session,
            runs=rows, following=following, states=_STATE_OF_RUNS, state=state, workflow=workflow,
        )  # fmt: skip

    @api.get("/ui/runs/{run_id}", include_in_schema=False)
    def run_page(request: Request, run_id: str, session: SignedIn) -> Response:
        try:
            run = get_run(run_id, settings=settings)
        except RunNotFoundError as exc:
            return page(request, "message.html", session, 404, title="Not found", message=str(exc))
        return page(request, "run.html", session, **_run_values(run, registry))

    @api.get("/ui/runs/{run_id}/steps", include_in_schema=False)
    def steps_fragment(request: Request, run_id: str, session: SignedIn) -> Response:
        try:
            run = get_run(run_id, settings=settings)
        except RunNotFoundError:
            return Response("no such run", status_code=404, media_type="text/plain")
        return page(request, "_steps.html", session, **_run_values(run, registry))

    @api.get("/ui/runs/{run_id}/events", include_in_schema=False)
    def run_events(request: Request, run_id: str, session: SignedIn, after: str = "") -> Response:
        if not registry.run_record(run_id):
            return Response("no such run", status_code=404, media_type="text/plain")
        # A reconnect names the last event it saw; the first connection, the last one the page showed.
        last = request.headers.get("last-event-id") or after or None
        stream = follow(registry, run_id, last, settings.sse_max_s)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"cache-control": "no-store"})

    @api.post("/ui/runs/{run_id}/cancel", include_in_schema=False)
    async def cancel(request: Request, run_id: str, session: SignedIn) -> Response:
        return await _operate(request, session, run_id, lambda who, form: get_run(run_id, settings=settings).cancel())

    @api.post("/ui/runs/{run_id}/steps/{step}/retry", include_in_schema=False)
    async def retry(request: Request, run_id: str, step: str, session: SignedIn) -> Response:
        return await _operate(request, session, run_id, lambda who, form: retry_step(registry, run_id, step, actor=who))

    @api.post("/ui/runs/{run_id}/abort", include_in_schema=False)
    async def abort(request: Request, run_id: str, session: SignedIn) -> Response:
        return await _operate(request, session, run_id, lambda who, form: abort_run(
            registry, run_id, form.get("reason", "")[:2000], actor=who))  # fmt: skip

    @api.post("/ui/runs/{run_id}/steps/{step}/skip", include_in_schema=False)
    async def skip(request: Request, run_id: str, step: str, session: SignedIn) -> Response:
        def give_output(who: str, form: dict[str, str]) -> None:
            try:
                output = json.loads(form.get("output_json", "") or "null")
            except json.JSONDecodeError as exc:
                raise StepStateError(run_id, step, "skip", f"given an output that is not JSON ({exc})") from None
            skip_step(registry, run_id, step, output, actor=who)

        return await _operate(request, session, run_id, give_output)

    async def _operate(request: Request, session: Session, run_id: str, action: Any) -> Response:
        form = await form_of(request, session)
        if not isinstance(form, dict):
            return form
        if "operate" not in session.who.scopes:
            return page(request, "message.html", session, 403, title="Forbidden", message="Your token cannot operate.")
        try:
            action(session.who.name, form)
        except (RunNotFoundError, StepStateError, AgentchordError) as exc:
            return page(request, "message.html", session, 409, title="Not done", message=str(exc))
        return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)


class _LoginRequired(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("login required")
        self.response = response


def signed_in(request: Request) -> Session:
    """The route's session; without one, a page gets a redirect to the login and anything else
    (a form post, the event stream, a fragment) a 401: never data."""
    session = request.app.state.console_sessions.read(request)
    if session is None:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            raise _LoginRequired(RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303))
        raise _LoginRequired(Response("log in at /ui/login", status_code=401, media_type="text/plain"))
    assert isinstance(session, Session)
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


def _run_values(run: Any, registry: Registry) -> dict[str, Any]:
    status = run.status()
    events = run.events()
    timings = run.timings()
    return {
        "status": status,
        "timings": timings,
        "results": registry.results(run.id),
        "events": events,
        "last_event_id": sse_id(events[-1]) if events else "",
        "progress": _progress_by_step(registry.progress(run.id)),
        # Built by the report (its names escaped there): markup the template inserts as is.
        "dag": Markup(dag_svg(run.plan(), status)),
        "gantt": Markup(gantt_svg(status, timings)),
        "approvals": run.approvals(),
        "ended": status.state in TERMINAL_STATES,
    }


_LINK_GONE = "This decision link has expired or was used already. Ask for the approval again, or log in."


def _progress_by_step(entries: list[Any]) -> dict[str, tuple[str, str]]:
    """Per step, what it reported: its latest progress message and the model text streamed so far."""
    shown: dict[str, tuple[str, str]] = {}
    for entry in entries:
        step, text = entry.fields.get("step", ""), entry.fields.get("text", "")
        message, streamed = shown.get(step, ("", ""))
        shown[step] = (message, streamed + text) if entry.type == "tokens" else (text, streamed)
    return shown


def _local(path: str) -> str:
    """Only a path on this site (an open redirect would send a reviewer anywhere)."""
    return path if path.startswith("/ui") and "//" not in path and "\\" not in path else "/ui/approvals"


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
