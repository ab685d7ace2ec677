"""The ``agentchord`` command: the local stack, the demo, and runs from the shell."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import redis
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

import agents
from coordinator.engine.checkpoints import ApprovalId, pending_approvals
from coordinator.engine.specs import builtin_workflows
from coordinator.interfaces.demo import run_demo
from coordinator.interfaces.replay import ReplayAction, dead_letters, parse_window, replay
from coordinator.interfaces.runner import Run, get_run, list_runs, rerun, start
from coordinator.interfaces.stack import LocalStack
from coordinator.observation.live import follow_events, sse_id
from coordinator.observation.report import (
    aggregate,
    aggregate_table,
    comparison_table,
    render_html,
    report_json,
    timing_table,
    token_table,
)
from coordinator.observation.roles import role_views, steps_without_worker
from coordinator.observation.status import RunStatus
from proj.celery import configure
from proj.errors import AgentchordError, RunNeedsAttentionError, RunTimeoutError
from proj.redaction import redact_url
from proj.registry import TERMINAL_STATES, Registry, registry_for
from proj.settings import Settings, env_example

# `agentchord up` writes the URL of the private Redis it started here, so other commands in
# the same directory find the running stack without exporting anything.
STACK_ENV = Path(".agentchord/stack.env")

cli = typer.Typer(help="Multi-agent workflows on Celery, with no central brain.", no_args_is_help=True)
# Piped output (CI logs, files) gets a wide table instead of rich's 80-column default.
console = Console() if sys.stdout.isatty() else Console(width=160)


def _settings() -> Settings:
    settings = Settings(_env_file=STACK_ENV if STACK_ENV.exists() else None)
    configure(settings)
    return settings


@cli.command()
def up(
    single_worker: Annotated[bool, typer.Option(help="One worker for every queue instead of one per role.")] = False,
    flower: Annotated[bool, typer.Option(help="Start Flower.")] = True,
    concurrency: Annotated[int, typer.Option(help="Processes per worker.")] = 1,
) -> None:
    """Run the local stack in the foreground until Ctrl-C."""
    settings = Settings()  # the stack adds a generated token and secret when none are set
    agents.load_agent_modules(settings.agent_modules)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # Ctrl-C stops the stack even when `up` was started from a background job or a service
    # manager, which hand their children SIGINT ignored (Python then installs no handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with LocalStack(
        settings, agents.known_roles(), flower=flower, concurrency=concurrency, single_worker=single_worker
    ) as stack:
        _write_stack_env(stack.settings)
        console.print(f"Redis   {stack.settings.redis_url}")
        console.print(f"API     {stack.api_url or '(off)'}  (token and webhook secret: {STACK_ENV}, mode 0600)")
        if stack.api_url:
            console.print(f"Console {stack.api_url}/ui  (log in with that token)")
        console.print(f"Flower  {stack.flower_url or '(off)'}")
        console.print(f"Workers {', '.join(w.hostname for w in stack.workers)}")
        console.print("Ready. Ctrl-C stops everything.")
        with contextlib.suppress(KeyboardInterrupt):
            stopping.wait()
        console.print("stopping ...")
    STACK_ENV.unlink(missing_ok=True)


def duration(seconds: float) -> str:
    """A span a person reads at a glance: ``45 s``, ``12 min``, ``23 h 59 min``, ``3 d 4 h``."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{secs} s"


def _write_stack_env(settings: Settings) -> None:
    """What other commands in this directory need to reach the running stack; secrets inside,
    so the file is created 0600 and never printed."""
    lines = {
        "AGENTCHORD_REDIS_URL": settings.redis_url or "",
        "AGENTCHORD_PUBLIC_URL": settings.public_url,
        "AGENTCHORD_API_TOKENS": ",".join(t.get_secret_value() for t in settings.api_tokens),
        "AGENTCHORD_WEBHOOK_SECRETS": ",".join(t.get_secret_value() for t in settings.webhook_secrets),
    }
    STACK_ENV.parent.mkdir(exist_ok=True)
    STACK_ENV.unlink(missing_ok=True)
    fd = os.open(STACK_ENV, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in lines.items())


@cli.command()
def api(
    host: Annotated[str | None, typer.Option(help="Listen address (default AGENTCHORD_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default AGENTCHORD_API_PORT).")] = None,
) -> None:
    """Serve the HTTP API (FastAPI on uvicorn)."""
    import uvicorn

    from coordinator.interfaces.api import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=host or settings.api_host, port=port or settings.api_port, log_level="info")


@cli.command()
def approvals() -> None:
    """Pending approvals, oldest first."""
    settings = _settings()
    table = Table("approval id", "workflow", "prompt", "deadline", "escalated")
    for view in pending_approvals(registry_for(settings), settings)[0]:
        deadline = "-" if view.deadline is None else f"{duration(view.deadline - time.time())} left"
        table.add_row(view.id, view.workflow, view.prompt, deadline, "yes" if view.escalated else "")
    console.print(table)


@cli.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The run, or the approval id (<run>.<step>, as `approvals` lists).")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approve.")] = False,
    comment: Annotated[str, typer.Option(help="The reviewer's comment.")] = "",
    data: Annotated[
        str | None, typer.Option(help="The reviewer's answer as JSON (checked by the gate's schema).")
    ] = None,
    step: Annotated[str | None, typer.Option(help="The gate, when the run waits at several.")] = None,
) -> None:
    """Approve (or --reject) the approval a run is parked at."""
    settings = _settings()
    if "." in run_id:  # an approval id: run ids never contain a dot
        gate = ApprovalId.parse(run_id)
        if step is not None and step != gate.step:
            raise typer.BadParameter(f"--step {step} contradicts the approval id {run_id}")
        run_id, step = gate.run_id, gate.step
    try:
        payload: Any = None if data is None else json.loads(data)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--data is not valid JSON: {exc}") from None
    view = get_run(run_id, settings=settings).approve(
        "reject" if reject else "approve", comment=comment, data=payload, step=step
    )
    console.print(f"{view.id}: {view.state}")


def _json_option(name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{name} is not valid JSON: {exc}") from None


@cli.command(name="rerun")
def rerun_command(
    run_id: str,
    from_step: Annotated[str, typer.Option("--from", help="The step to run again; the steps after it run too.")],
    input: Annotated[str | None, typer.Option("--input", help="A new input as a JSON object.")] = None,
    params: Annotated[
        str | None, typer.Option("--params", help='Params to change, per step: {"step": {"param": value}}.')
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait (up to an hour) for the new run to end.")] = False,
) -> None:
    """Run an ended run again from a step, reusing the unchanged outputs of the steps before it."""
    settings = _settings()
    new = rerun(
        run_id, from_step, input=_json_option("--input", input), params=_json_option("--params", params),
        settings=settings,
    )  # fmt: skip
    reused = sorted(name for name, step in new.status().steps.items() if step.reused_from)
    console.print(f"{new.id}: rerun of {run_id} from {from_step}; reused: {', '.join(reused) or 'nothing'}")
    if wait:
        new.wait(timeout=3600)
        console.print(f"{new.id}: {new.status().state}")


@cli.command(name="replay")
def replay_command(
    state: Annotated[
        str, typer.Option(help="Runs in this state: needs_attention, failed, cancelled, budget_exceeded.")
    ],
    workflow: Annotated[str, typer.Option(help="Only runs of this workflow.")] = "",
    since: Annotated[str | None, typer.Option(help="Only runs started within this window: 90s, 15m, 1h, 2d.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do it (without it: a dry run that lists the plan).")] = False,
    rate: Annotated[float, typer.Option(help="Actions per second, at most.")] = 5.0,
    limit: Annotated[int, typer.Option(help="Runs at most.")] = 1000,
) -> None:
    """Retry (needs_attention) or rerun (failed, cancelled, budget_exceeded) many runs at once."""
    settings = _settings()
    window = parse_window(since) if since else None

    def show(action: ReplayAction) -> None:
        made = f" -> {action.new_run_id}" if action.new_run_id else ""
        console.print(
            f"{action.run_id} {action.workflow} {action.action} {','.join(action.steps)}: {action.outcome}{made}"
        )

    actions = replay(
        registry_for(settings), state, workflow, window, execute=yes, rate_per_s=rate, limit=limit,
        on_action=show,
    )  # fmt: skip
    if not yes:
        for action in actions:
            show(action)
        console.print(f"dry run: {len(actions)} run(s) would be replayed; add --yes to do it")
    else:
        done = sum(1 for a in actions if a.outcome == "done")
        console.print(f"replayed {done} of {len(actions)} run(s)")


@cli.command(name="dead-letters")
def dead_letters_command(
    since: Annotated[str | None, typer.Option(help="Only steps given up on within this window: 15m, 1h, 2d.")] = None,
    show: Annotated[int, typer.Option(help="Steps listed per error.")] = 5,
) -> None:
    """Steps given up on (retries exhausted or a permanent error), grouped by error."""
    groups = dead_letters(registry_for(_settings()), parse_window(since) if since else None)
    if not groups:
        console.print("no step was given up on" + (f" in the last {since}" if since else ""))
        return
    table = Table(title="dead letters: steps given up on, by error")
    for column in ("count", "error", "steps (run.step, attempts)"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for group in groups:
        listed = ", ".join(f"{s.run_id}.{s.step} ({s.attempts})" for s in group.steps[:show])
        more = f" and {group.count - show} more" if group.count > show else ""
        table.add_row(str(group.count), group.error, listed + more)
    console.print(table)


@cli.command()
def retry(run_id: str, step: str) -> None:
    """Operator: run a failed step again, with fresh attempts."""
    get_run(run_id, settings=_settings()).retry_step(step)
    console.print(f"{run_id}.{step}: retrying")


@cli.command()
def skip(
    run_id: str,
    step: str,
    output: Annotated[str, typer.Option(help="The step's output as JSON, as its dependents will see it.")] = "{}",
) -> None:
    """Operator: give a failed step an output and let the run continue."""
    try:
        value: Any = json.loads(output)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--output is not valid JSON: {exc}") from None
    get_run(run_id, settings=_settings()).skip_step(step, value)
    console.print(f"{run_id}.{step}: skipped")


@cli.command()
def abort(run_id: str, reason: Annotated[str, typer.Option(help="Why, for the event log.")] = "") -> None:
    """Operator: end a run failed."""
    ended = get_run(run_id, settings=_settings()).abort(reason)
    console.print(f"{run_id}: {'aborted' if ended else 'had already ended'}")


@cli.command()
def demo(
    latency_ms: Annotated[float, typer.Option(help="Simulated model latency per call (offline model).")] = 0.0,
    llm: Annotated[str, typer.Option(help="Model backend: offline or openai (any OpenAI-compatible server).")] = "",
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL, e.g. http://localhost:11434/v1.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name on that server.")] = None,
) -> None:
    """Run the gated code-review workflow end to end on a sample diff, on a fresh local stack.

    The API key of a real server comes from AGENTCHORD_LLM_API_KEY, never from the command line.
    """
    # The demo streams the models' answers to each run's progress stream (the console shows them).
    overrides: dict[str, Any] = {"stream_tokens": True}
    if latency_ms:
        overrides["simulated_latency_ms"] = latency_ms
    if llm:
        overrides["llm_backend"] = llm
    if base_url:
        overrides["llm_base_url"] = base_url
    if model:
        overrides["llm_model"] = model
    settings = Settings().model_copy(update=overrides)
    raise typer.Exit(run_demo(settings, console))


@cli.command()
def run(
    workflow: Annotated[str, typer.Argument(help="A built-in workflow name or a YAML/JSON file.")],
    input: Annotated[str, typer.Option("--input", help="Workflow input as a JSON object.")] = "{}",
    idempotency_key: Annotated[str | None, typer.Option(help="Starting twice with one key gives one run.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run and print its results.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300.0,
    collapse: Annotated[bool, typer.Option(help="Run the whole workflow as one model call.")] = False,
    compare: Annotated[bool, typer.Option(help="Run it both ways and compare latency, tokens and cost.")] = False,
    budget: Annotated[
        str | None,
        typer.Option(help='The run\'s budget as JSON, e.g. \'{"max_cost_usd": 0.5, "max_model_calls": 40}\'.'),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Whose run it is, for the admission limits.")] = None,
) -> None:
    """Start a workflow run and print its id."""
    settings = _settings()
    try:
        payload: Any = json.loads(input)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--input is not valid JSON: {exc}") from None
    try:
        limits: Any = json.loads(budget) if budget is not None else None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--budget is not valid JSON: {exc}") from None
    if compare:
        runs = [start(workflow, input=payload, collapse=c, settings=settings) for c in (False, True)]
        for handle in runs:
            _wait_saying_why(handle, registry_for(settings), timeout)
        console.print(comparison_table([(h.status(), h.timings()) for h in runs]))
        return
    handle = start(
        workflow,
        input=payload,
        idempotency_key=idempotency_key,
        collapse=collapse,
        budget=limits,
        tenant=tenant,
        settings=settings,
    )
    console.print(handle.id)
    if wait:
        console.print_json(json.dumps(_wait_saying_why(handle, registry_for(settings), timeout)))


# How often a waiting command looks at what the run waits for (and wakes up to say it).
WAIT_POLL_S = 1.0
_ENDED = {*TERMINAL_STATES, "needs_attention"}


class _WaitReporter:
    """Says on stderr what a run waits for: a line when that changes, nothing while it does not
    (stdout stays the command's result)."""

    def __init__(self, handle: Run, registry: Registry) -> None:
        self._handle, self._registry, self._said = handle, registry, ""

    def update(self) -> None:
        line = waiting_for(self._handle, self._registry)
        if line and line != self._said:
            typer.echo(line, err=True)
            self._said = line


def waiting_for(handle: Run, registry: Registry) -> str:
    """One line: what the run waits for now (a worker nobody runs, an approval, its steps)."""
    current = handle.status()
    if current.state == "queued":
        return "queued: the run starts when a running run ends and frees a slot (the run limits)"
    without_worker = steps_without_worker(registry, handle.id, current.steps)
    parts = [wait.line() for wait in without_worker]
    if current.state == "waiting_approval" or any(s.state == "waiting_approval" for s in current.steps.values()):
        parts += [
            f"waiting for approval {view.id}{'' if view.kind == 'gate' else f' ({view.kind})'} at step '{view.step}' "
            f"(approve: agentchord approve {view.id}; or with --reject)"
            for view in handle.approvals()
            if view.state == "pending"
        ]
    unserved = {wait.step for wait in without_worker}
    running = [
        name if step.state == "running" else f"{name} ({step.state})"
        for name, step in current.steps.items()
        if step.state in ("running", "retrying", "validating")
    ]
    queued = [name for name, step in current.steps.items() if step.state == "dispatched" and name not in unserved]
    if running:
        parts.append("running: " + ", ".join(running))
    if queued:
        parts.append("queued for a worker: " + ", ".join(queued))
    return "; ".join(parts)


def _wait_saying_why(handle: Run, registry: Registry, timeout: float) -> dict[str, Any]:
    """``handle.wait(timeout)``, woken about once a second to say on stderr what the run waits
    for; the same results and errors (a timeout names the whole ``timeout``)."""
    reporter = _WaitReporter(handle, registry)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return handle.wait(timeout=max(min(remaining, WAIT_POLL_S), 0.0))
        except RunTimeoutError as exc:
            reporter.update()  # also when giving up: the last line says what it waited for
            if remaining <= WAIT_POLL_S:
                raise RunTimeoutError(handle.id, timeout, exc.state) from None


@cli.command()
def status(
    run_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A run's state, steps and timing table."""
    settings = _settings()
    handle = get_run(run_id, settings=settings)
    current = handle.status()
    if as_json:
        console.print_json(json.dumps({"status": current.model_dump(), "timings": handle.timings().model_dump()}))
    else:
        timings = handle.timings()
        console.print(timing_table(current, timings))
        console.print(token_table(timings))
        for name, step in current.steps.items():
            if step.error:
                console.print(f"step {name} failed: {step.error}", highlight=False, markup=False)
        for wait in steps_without_worker(registry_for(settings), run_id, current.steps):
            console.print(wait.line(), highlight=False, markup=False)
        _print_budget(current)
        if current.state == "needs_attention":
            _print_next_steps(run_id)


@cli.command()
def report(
    run_id: Annotated[str | None, typer.Argument(help="One run; omit with --last/--workflow.")] = None,
    last: Annotated[int, typer.Option(help="Aggregate over the newest N finished runs.")] = 0,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page.")] = None,
) -> None:
    """The coordination-tax report of one run, or P50/P95/P99 over many."""
    settings = _settings()
    if run_id:
        handles = [get_run(run_id, settings=settings)]
    else:
        rows = [r for r in list_runs(max(last, 1) * 4 + 50, settings=settings) if r["finished_at"]]
        rows = [r for r in rows if workflow is None or r["workflow"] == workflow][: last or 20]
        handles = [get_run(r["id"], settings=settings) for r in rows]
    runs = [(h.status(), h.timings()) for h in handles]
    agg = aggregate([t for _, t in runs]) if not run_id else None
    if html_file is not None:
        html_file.write_text(render_html(runs, agg))
        typer.echo(f"wrote {html_file.resolve()}", err=True)  # stderr: --json output stays JSON
    if as_json:
        console.print_json(json.dumps(report_json(runs, agg)))
        return
    if run_id:
        console.print(timing_table(*runs[0]))
        console.print(token_table(runs[0][1]))
        _print_budget(runs[0][0])
    elif agg is not None:
        console.print(aggregate_table(agg, f"workflow {workflow}" if workflow else "all workflows"))


def _print_budget(current: RunStatus) -> None:
    """The run's spend against its budget, a line per limit (nothing without a budget)."""
    if current.budget is None:
        return
    state = f" - exceeded: {current.budget.exceeded}" if current.budget.exceeded else ""
    console.print(f"budget{state}", highlight=False, markup=False)
    for line in current.budget.lines():
        console.print(f"  {line}", highlight=False, markup=False)


@cli.command()
def roles() -> None:
    """Each role's queue: live workers, concurrency, tasks in flight, messages waiting, oldest age."""
    settings = _settings()
    agents.load_agent_modules(settings.agent_modules)
    table = Table("queue", "live workers", "concurrency", "in flight", "waiting", "oldest waiting")
    for view in role_views(registry_for(settings), agents.known_roles()):
        oldest = "-" if view.oldest_waiting_s is None else duration(view.oldest_waiting_s)
        workers = ", ".join(view.workers) or ("NONE" if view.waiting else "-")
        table.add_row(view.queue, workers, str(view.concurrency), str(view.in_flight), str(view.waiting), oldest)
    console.print(table)


@cli.command()
def watch(run_id: str) -> None:
    """Print a run's events as they happen, until it ends (exit 1 unless it succeeded); what it
    waits for meanwhile goes to stderr."""
    settings = _settings()
    handle = get_run(run_id, settings=settings)
    registry = registry_for(settings)
    reporter = _WaitReporter(handle, registry)
    last_id: str | None = None
    while True:
        # The state is read before following: once it has ended, this pass yields the rest.
        ended = registry.run_record(run_id).get("state", "") in _ENDED | {""}
        for event in follow_events(registry, run_id, last_id, timeout_s=WAIT_POLL_S):
            last_id = sse_id(event)
            fields = " ".join(f"{key}={value}" for key, value in sorted(event.fields.items()))
            when = datetime.fromtimestamp(event.at, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
            console.print(f"{when} {event.type} {fields}", highlight=False, markup=False)
        if ended:
            break
        reporter.update()
    state = handle.status().state
    console.print(f"run {run_id}: {state}", highlight=False)
    if state != "succeeded":
        raise typer.Exit(1)


@cli.command("list")
def list_command(limit: Annotated[int, typer.Option(help="How many runs.")] = 20) -> None:
    """The newest runs."""
    table = Table("id", "workflow", "state", "started (local time)", "age")
    for row in list_runs(limit, settings=_settings()):
        created = float(row["created_at"] or 0)
        when = datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(row["id"], row["workflow"], row["state"], when, duration(time.time() - created) + " ago")
    console.print(table)


@cli.command()
def workflows() -> None:
    """The built-in workflows."""
    for name in builtin_workflows():
        console.print(name)


@cli.command("env-example")
def env_example_command() -> None:
    """Print every setting with its default (the content of deploy/.env.example)."""
    sys.stdout.write(env_example())


# Exit codes, one per cause: a script can tell a failed run from a slow one from a missing Redis.
EXIT_ERROR = 2  # bad input, an unknown run, a run that failed or waits for an operator
EXIT_TIMED_OUT = 3  # `--wait` gave up; the run goes on
EXIT_UNREACHABLE = 4  # Redis or the API (or a setting naming one) cannot be reached or read


def main() -> None:
    """Console-script entry point. Every error is one line naming what to fix and the exit code
    says which kind (see ``EXIT_*``); ``--debug`` anywhere on the line adds the traceback."""
    # Like `celery` and `python`, import user modules (AGENTCHORD_AGENT_MODULES) from here.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        cli()
    except RunTimeoutError as exc:
        _fail(debug, str(exc), EXIT_TIMED_OUT)
    except AgentchordError as exc:
        if isinstance(exc, RunNeedsAttentionError):
            console.print(f"[red]error:[/] {exc}")
            _print_next_steps(exc.run_id)
            raise SystemExit(EXIT_ERROR) from None
        _fail(debug, str(exc), EXIT_ERROR)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        where = redact_url(_settings_or_none() or "redis://127.0.0.1:6379/0")
        _fail(debug, f"cannot reach Redis at {where} ({type(exc).__name__}): start the local stack with "
              "`agentchord up`, or set AGENTCHORD_REDIS_URL to yours", EXIT_UNREACHABLE)  # fmt: skip
    except httpx.TransportError as exc:
        fix = "start it with `agentchord api` (or `agentchord up`), or set AGENTCHORD_PUBLIC_URL to its address"
        _fail(debug, f"cannot reach the API at {_request_url(exc)} ({type(exc).__name__}): {fix}", EXIT_UNREACHABLE)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": ("?",), "msg": str(exc)}
        name = "AGENTCHORD_" + str(first["loc"][0]).upper() if first.get("loc") else "a setting"
        _fail(debug, f"{name} is not valid: {first['msg']}", EXIT_UNREACHABLE)


def _fail(debug: bool, message: str, code: int) -> None:
    console.print(f"[red]error:[/] {message}", highlight=False)
    if debug:
        traceback.print_exc()
    raise SystemExit(code)


def _request_url(exc: httpx.TransportError) -> str:
    try:
        return redact_url(str(exc.request.url))
    except RuntimeError:  # an error raised before its request was built
        return "(unknown URL)"


def _settings_or_none() -> str | None:
    try:
        return _settings().resolved_redis_url
    except Exception:  # the settings themselves may be what is wrong
        return None


def _print_next_steps(run_id: str) -> None:
    """What an operator can do about a run that needs attention, as commands to paste."""
    handle = get_run(run_id, settings=_settings())
    failed = [name for name, step in handle.status().steps.items() if step.state == "failed"]
    lines = []
    for step in failed:
        lines.append(f"agentchord retry {run_id} {step}        # run it again, fresh attempts")
        lines.append(f"agentchord skip {run_id} {step} --output '{{...}}'   # give it an output and go on")
    lines.append(f"agentchord abort {run_id} --reason '...'   # end the run failed")
    console.print("next:\n  " + "\n  ".join(lines), highlight=False, markup=False)


if __name__ == "__main__":
    main()
