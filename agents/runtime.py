"""How an agent task runs one step: claim, read context, run the body once, store the result.

Delivery is at least once (late acks, redelivery after a lost worker); completion is
effectively once: a step whose result is stored never runs its body again, and copies
delivered at the same time are serialised by a lease on the step, renewed while the body
runs. Failures follow :mod:`proj.policy`: transient ones are retried with backoff until the
step's attempts run out; the rest, and exhausted steps, are escalated to an operator.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
from celery import Task
from celery.signals import task_received, task_unknown
from pydantic import BaseModel

from agents.backends import model_for
from agents.context import StepContext
from agents.handoff import HandoffRecord, StepOutcome, outcome_of
from agents.llm import MeteredModel, UsageMeter, count_tokens, step_cost
from agents.reuse import step_input_hash
from agents.role import AgentRole, load_agent_modules, registered_role
from agents.spend import RunBudgetGate
from proj.celery import app, current_settings
from proj.errors import BudgetExceededError, PermanentError, StepFailedError
from proj.messages import callback_task_id, send_steps
from proj.plan import RunPlan, StepPlan, map_items, member_of, plan_for
from proj.policy import is_transient
from proj.queues import ADVANCE_TASK, ESCALATE_TO_APPROVAL_TASK, RERUN_TASK, VALIDATE_TASK
from proj.registry import ADMITTED, Registry, StepWork, registry_for
from proj.tracing import annotate, span

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How often a second copy of a step re-checks while the first holds the lease.
_BUSY_POLL_MAX_S = 2.0


def execute_step(task: Task, role: AgentRole, run_id: str, step: str, plan_digest: str = "") -> dict[str, Any]:
    """The body of every agent task. Returns a small reference, never the output itself.

    ``plan_digest`` names the run's plan (messages carry it, so the plan comes from this
    process's cache, not from Redis); a message without it reads the digest from the run."""
    settings = current_settings()
    registry = registry_for(settings)
    token = f"{task.request.id}:{uuid.uuid4().hex[:12]}"
    annotate(**{"agentchord.run_id": run_id, "agentchord.step": step, "agentchord.role": role.name})
    plan_digest = plan_digest or registry.plan_digest_of(run_id)
    plans = registry.plan_by_digest(plan_digest) if plan_digest else {}
    step_plan = plan_for(plans, step)
    member = member_of(step) if step_plan is not None and step_plan.map else None
    if step_plan is None or (step_plan.map and member is None):
        # A map step itself is never sent (its members are): only a stale or forged message says so.
        logger.warning("step %s of run %s not run: no such run or step (or its plan expired)", step, run_id)
        return {"run_id": run_id, "step": step, "status": "missing"}
    with span("agentchord.registry.begin_step"):
        received_at = str(getattr(task.request, RECEIVED_AT, "") or "")
        outcome = through_redis_outage(
            registry.begin_step, run_id, step, token, task.request.hostname or "", step_plan, received_at
        )
    if outcome.status == "busy":
        # Another delivery of this step is running it; look again when its lease may be over.
        countdown = min(max(outcome.retry_in_ms / 1000.0, 0.05), _BUSY_POLL_MAX_S)
        raise task.retry(countdown=countdown)
    if outcome.status == "exhausted":
        error = f"gave up after {outcome.attempts} attempt(s): {outcome.last_error}"
        give_up(registry, run_id, step, "*", error, "", outcome.attempts, step_plan)
        raise StepFailedError(run_id, step, error)
    if outcome.status == "done":
        # A duplicate delivery, maybe of a message whose first worker died after storing the
        # result and before sending what it claimed: make sure the successors were sent.
        resend_claimed_successors(registry, run_id, step, plans, plan_digest)
        return {"run_id": run_id, "step": step, "status": "done"}
    if outcome.status != "run" or outcome.work is None:
        # "inactive"/"missing": the run ended or expired; "failed": it waits for an operator.
        logger.info("step %s of run %s not run: %s", step, run_id, outcome.status)
        return {"run_id": run_id, "step": step, "status": outcome.status}

    work = outcome.work
    meter = UsageMeter()
    started = time.perf_counter()
    run_started = outcome.began_monotonic
    try:
        # Building the context can fail too (a bad handoff record, an unknown backend): that must
        # escalate like a failing body, never leave the step claimed and silent.
        used = used_fields(work.dependencies, work.plan.uses)
        dependencies, feedback = _validation_inputs(registry, run_id, step, work.plan, used)
        item, members = _member_item(step, member, work, settings.map_max_items)
        context = StepContext(
            item=item,
            index=member[1] if member else None,
            run_id=run_id,
            step=step,
            agent=role.name,
            input=work.input,
            dependencies=dependencies,
            params=work.plan.params,
            attempt=work.attempt,
            handoff=HandoffRecord.model_validate(work.handoff) if work.handoff is not None else None,
            feedback=feedback,
        )
        emit = _emitter(registry, run_id, step)
        on_token = _TokenStream(emit) if settings.stream_tokens else None
        gate = RunBudgetGate(registry, run_id, step, settings.model_prices, settings.llm_max_tokens)
        context.with_model(MeteredModel(model_for(settings, role.name), meter, on_token, gate), meter.injected)
        context.with_emitter(emit)
        with LeaseKeeper(registry, run_id, step, token):
            output = role.function(context)
            result_json = _to_json(output)
            route = _checked_route(work.plan, result_json)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, BudgetExceededError):
            over_budget(registry, run_id, step, token, exc, work)
            raise StepFailedError(run_id, step, error) from exc
        policy = work.plan.retry
        if is_transient(exc) and work.attempt < policy.max_attempts:
            # A provider's Retry-After is a floor under the policy's backoff.
            delay = max(policy.delay_s(work.attempt), float(getattr(exc, "retry_after_s", 0.0) or 0.0))
            registry.retry_later(run_id, step, token, error, work.attempt, delay)
            raise task.retry(countdown=delay, exc=exc) from None
        give_up(registry, run_id, step, token, error, traceback.format_exc(), work.attempt, work.plan)
        raise StepFailedError(run_id, step, error) from exc
    body_s = time.perf_counter() - started
    output_tokens = _output_tokens(output, result_json)

    if member is not None:
        metadata = _metadata(body_s, meter, work, run_started, output_tokens)
        metadata["agent_version"] = role.version
        _, joined = through_redis_outage(
            registry.finish_member, run_id, step, member[0], result_json, members, metadata
        )
        if joined:
            dispatch(registry, run_id)
        return {"run_id": run_id, "step": step, "status": "succeeded"}

    if work.plan.is_check or _needs_validation(work.plan, result_json):
        metadata = _metadata(body_s, meter, work, run_started, output_tokens)
        return _validation_turn(registry, run_id, step, work.plan, result_json, metadata)

    annotate(
        **{
            "agentchord.attempt": work.attempt,
            "agentchord.prompt_tokens": meter.prompt_tokens,
            "agentchord.completion_tokens": meter.completion_tokens,
            "agentchord.reinjected_tokens": meter.reinjected_tokens,
        }
    )
    handoff_patch = ""
    if work.handoff is not None:
        patch = context.handoff_patch()
        done = StepOutcome(step=step, agent=role.name, outcome=outcome_of(json.loads(result_json)))
        patch["steps_completed"] = [done.model_dump()]
        handoff_patch = json.dumps(patch)
    with span("agentchord.registry.finish_step"):
        metadata = _metadata(body_s, meter, work, run_started, output_tokens)
        # What the body saw and which version of the role ran it: a rerun reuses the output only
        # for the same (agents/reuse.py).
        metadata["agent_version"] = role.version
        metadata["input_hash"] = step_input_hash(
            role.name, role, work.plan.params, work.input, dependencies, work.handoff
        )
        # Storing is idempotent (a repeat after a lost reply finds the result and stores nothing):
        # a Redis failover or restart now must not throw away a body that already ran.
        finished = through_redis_outage(
            registry.finish_step, run_id, step, result_json, metadata, plans, route=route, handoff_patch=handoff_patch
        )
    for hook in AFTER_STORE_HOOKS:
        hook(context)
    if finished.admitted:
        dispatch_admitted(registry)
    if not finished.stored:
        resend_claimed_successors(registry, run_id, step, plans, plan_digest)
    elif work.plan.inline:
        send_steps(run_id, steps_with_roles(registry, run_id, finished.claimed), plan_digest)
    else:
        dispatch(registry, run_id)
    return {"run_id": run_id, "step": step, "status": "succeeded"}


# How long the step path keeps trying a registry call through a Redis outage (a Sentinel failover
# names a new master in about 2 s; a restart with AOF takes a few seconds): then the task fails
# and the watchdog re-drives the step.
REDIS_OUTAGE_S = 30.0
_OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError)


def through_redis_outage(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, tried again with backoff while Redis is unreachable, read-only (a
    demoted master) or refusing writes for want of replicas (``min-replicas-to-write``). Only for
    calls that are safe to repeat: the registry's transitions are (each checks the step's state)."""
    deadline = time.monotonic() + REDIS_OUTAGE_S
    delay = 0.1
    while True:
        try:
            return call(*args, **kwargs)
        except (*_OUTAGE_ERRORS, redis.ResponseError) as exc:
            retryable = isinstance(exc, _OUTAGE_ERRORS) or str(exc).startswith("NOREPLICAS")
            if not retryable or time.monotonic() + delay > deadline:
                raise
            logger.warning("registry unreachable (%s); trying again in %.1fs", type(exc).__name__, delay)
            time.sleep(delay)  # backoff while Redis fails over or restarts, on purpose
            delay = min(delay * 2, 3.0)


def _emitter(registry: Registry, run_id: str, step: str) -> Callable[[str, str], None]:
    def emit(kind: str, text: str) -> None:
        registry.emit(run_id, step, kind, text[:4000])

    return emit


def _member_item(step: str, member: tuple[str, int] | None, work: StepWork, max_items: int) -> tuple[Any, int]:
    """A map member's element of the list and the map's size; (None, 0) for any other step."""
    if member is None or work.plan.map is None:
        return None, 0
    items = map_items(member[0], work.plan.map, work.dependencies, max_items)
    if member[1] >= len(items):
        raise PermanentError(f"{step}: the list at {work.plan.map!r} has {len(items)} items, no item {member[1]}")
    return items[member[1]], len(items)


class _TokenStream:
    """A model's streamed text, sent to the progress stream in pieces of a few chunks (one Redis
    write per piece, not per token)."""

    def __init__(self, emit: Callable[[str, str], None], min_chars: int = 48) -> None:
        self.emit, self.min_chars, self.pending = emit, min_chars, ""

    def __call__(self, text: str) -> None:
        self.pending += text
        if len(self.pending) >= self.min_chars or not text.endswith(" "):
            self.emit("tokens", self.pending)
            self.pending = ""


def used_fields(dependencies: dict[str, Any], uses: dict[str, tuple[str, ...]] | None) -> dict[str, Any]:
    """The dependencies' outputs as a step that ``uses`` named fields sees them: only those fields
    of the dependencies it names (in the order it names them), the others whole."""
    if not uses:
        return dependencies
    return {
        name: {field: output[field] for field in uses[name] if field in output}
        if name in uses and isinstance(output, dict)
        else output
        for name, output in dependencies.items()
    }


# Called with the step's context after its result is stored, before the next steps are sent:
# instrumentation, and the fault-injection tests' crash point.
AFTER_STORE_HOOKS: list[Callable[[StepContext], None]] = []


def _advance_by_message(_registry: Registry, run_id: str) -> Any:
    app.send_task(ADVANCE_TASK, kwargs={"run_id": run_id}, task_id=f"{run_id}.advance.{uuid.uuid4().hex[:8]}")


# How a worker dispatches what a step of a non-inline workflow (gates, routers, validators) made
# ready. The coordinator installs its in-process dispatch (coordinator.engine.dispatch) when imported,
# as every worker does; a process without it falls back to a coordinator.advance message.
_dispatchers: list[Callable[[Registry, str], Any]] = [_advance_by_message]


def set_dispatcher(dispatcher: Callable[[Registry, str], Any]) -> None:
    _dispatchers[0] = dispatcher


def dispatch(registry: Registry, run_id: str) -> None:
    _dispatchers[0](registry, run_id)


def resend_claimed_successors(
    registry: Registry, run_id: str, step: str, plans: RunPlan, plan_digest: str
) -> list[str]:
    """Send again the successors ``step`` claimed that never started: its worker may have died
    between storing the result and sending them. A copy of a message already queued is harmless
    (a step runs its body once); returns the steps sent."""
    plan = plans[step]
    if not plan.inline:
        dispatch(registry, run_id)
        return []
    waiting = registry.steps_in_state(run_id, list(plan.successors), "dispatched")
    return send_steps(run_id, ((name, plans[name]) for name in waiting), plan_digest)


def _validation_inputs(
    registry: Registry, run_id: str, step: str, plan: StepPlan, dependencies: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """A validator step sees the candidate it checks; a validated generator sees the last critique."""
    if plan.validates:
        candidate, _, _ = registry.validation_state(run_id, plan.validates)
        return {plan.validates: json.loads(candidate) if candidate else None}, []
    if plan.validation:
        return dependencies, registry.validation_state(run_id, step)[2]
    return dependencies, []


def _needs_validation(plan: StepPlan, result_json: str) -> bool:
    """A validated step's output goes to its validator unless it is confident enough."""
    validation = plan.validation
    if not validation:
        return False
    output = json.loads(result_json)
    confidence = output.get("confidence") if isinstance(output, dict) else None
    return not (isinstance(confidence, int | float) and confidence >= validation.threshold)


def _validation_turn(
    registry: Registry, run_id: str, step: str, plan: StepPlan, result_json: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    """The validator gate's loop: generator -> validator -> (PASS) result, or (FAIL) the generator
    again with the critique, at most ``max_rounds`` times, then escalation."""
    if not plan.validates:
        round_no = registry.hold_candidate(run_id, step, result_json, metadata)
        if not round_no:  # refused by the step state table (a late or duplicated delivery)
            return {"run_id": run_id, "step": step, "status": "refused"}
        app.send_task(
            VALIDATE_TASK,
            kwargs={"run_id": run_id, "step": step},
            task_id=callback_task_id(run_id, step, f"validate.r{round_no}"),
        )
        return {"run_id": run_id, "step": step, "status": "validating", "round": round_no}
    target = plan.validates
    verdict = json.loads(result_json)
    target_plan = registry.plan_of(run_id)[target]
    assert target_plan.validation is not None  # a validator step only checks a validated step
    if verdict.get("verdict") == "PASS":
        registry.promote_candidate(run_id, target, step, result_json)
        dispatch(registry, run_id)
        return {"run_id": run_id, "step": step, "status": "passed"}
    issues = [str(issue) for issue in verdict.get("issues", [])]
    _, round_no, _ = registry.validation_state(run_id, target)
    if round_no < target_plan.validation.max_rounds:
        if not registry.next_round(run_id, target, step, issues):
            return {"run_id": run_id, "step": step, "status": "refused"}
        app.send_task(
            RERUN_TASK,
            kwargs={"run_id": run_id, "step": target},
            task_id=callback_task_id(run_id, target, f"rerun.r{round_no + 1}"),
        )
        return {"run_id": run_id, "step": step, "status": "failed", "round": round_no}
    error = f"validation failed after {round_no} round(s): {'; '.join(issues) or 'no issues given'}"
    registry.release_claim(run_id, step)
    exhausted = target_plan.model_copy(update={"on_failure": target_plan.validation.on_exhausted})
    give_up(registry, run_id, target, "*", error, "", round_no, exhausted)
    return {"run_id": run_id, "step": step, "status": "exhausted"}


def _output_tokens(output: Any, result_json: str) -> int:
    """The output's tokens as a prompt carries it (StepContext.inject: spaced JSON). A dict is
    stored as spaced JSON already (``_to_json``; key order does not change a count), so only a
    pydantic model's compact JSON is encoded again."""
    if isinstance(output, BaseModel):
        return count_tokens(json.dumps(output.model_dump(mode="json")))
    return count_tokens(result_json)


def _cost_of(meter: UsageMeter) -> float:
    prices = current_settings().model_prices
    return step_cost(prices, meter.model, meter.prompt_tokens, meter.completion_tokens, meter.cached_tokens)


def _metadata(
    body_s: float, meter: UsageMeter, work: StepWork, run_started: float, output_tokens: int
) -> dict[str, Any]:
    measured: dict[str, Any] = {
        "body_s": f"{body_s:.6f}",
        "model_s": f"{meter.latency_s:.6f}" if meter.calls else "",
        "rate_limit_wait_s": f"{meter.rate_limit_wait_s:.6f}" if meter.rate_limit_wait_s else "",
        "model_calls": meter.calls,
        "prompt_tokens": meter.prompt_tokens,
        "completion_tokens": meter.completion_tokens,
        "cached_tokens": meter.cached_tokens,
        "reinjected_tokens": meter.reinjected_tokens,
        # Billed with the prices in force now: a later price change does not rewrite history.
        "cost": f"{cost:.9f}" if (cost := _cost_of(meter)) else "",
        "model": meter.model,
        "context_bytes": work.context_bytes,
        # What re-sending this output to a later prompt would cost: the broadcast baseline.
        "output_tokens": output_tokens,
        # Monotonic time from claiming the step to storing its result (registry I/O included).
        "run_s": f"{time.perf_counter() - run_started:.6f}",
    }
    # Zeros and blanks are not stored: every reader defaults them (a step of a role that calls no
    # model keeps six fields fewer in the steps hash).
    return {name: value for name, value in measured.items() if value not in (0, "")}


def steps_with_roles(
    registry: Registry, run_id: str, steps: Iterable[tuple[str, StepPlan]]
) -> list[tuple[str, StepPlan]]:
    """The claimed ``steps`` whose role this deployment still has. A step of a role it no longer
    registers (a run started before a deploy removed or renamed the role: a run keeps the plan it
    started with) waits for an operator, with a reason naming the role, instead of a message no
    worker will ever take."""
    ready = []
    for name, plan in steps:
        if plan.agent and registered_role(plan.agent) is None:
            # This process may not have imported the deployment's role modules yet (a script
            # that only approves): import them before deciding a role is gone.
            load_agent_modules(registry.settings.agent_modules)
        if plan.agent and registered_role(plan.agent) is None:
            error = (
                f"agent role {plan.agent!r} no longer exists: this run's plan (the workflow version it "
                "started with) needs it and no module of this deployment registers it; deploy the role "
                "again and retry the step, or skip it"
            )
            logger.warning("run %s step %s: %s", run_id, name, error)
            registry.escalate(run_id, name, "*", error, "", 0, plan.agent)
        else:
            ready.append((name, plan))
    return ready


def give_up(
    registry: Registry,
    run_id: str,
    step: str,
    token: str,
    error: str,
    trace: str,
    attempts: int,
    plan: StepPlan,
) -> None:
    """Escalate a step that will not be retried: to an operator, or to a human approval. A map
    member follows its map's ``on_member_failure``: escalate, end the run failed, or count as an
    arrival with its error in its place."""
    member = member_of(step) if plan.map else None
    if member is not None and plan.on_member_failure == "continue":
        marked = json.dumps({"error": error, "failed": True})
        _, joined = registry.finish_member(
            run_id, step, member[0], marked, registry.map_members(run_id, member[0]) or 0, {}
        )
        if joined:
            dispatch(registry, run_id)
        return
    if member is not None and plan.on_member_failure == "fail":
        ended = registry.escalate(run_id, step, token, error, trace, attempts, plan.agent or "", "failed")
        if ended == 1 + ADMITTED:
            dispatch_admitted(registry)
        return
    escalated = registry.escalate(run_id, step, token, error, trace, attempts, plan.agent or "")
    if escalated and plan.on_failure == "escalate_to_approval":
        app.send_task(
            ESCALATE_TO_APPROVAL_TASK,
            kwargs={"run_id": run_id, "step": step, "error": error},
            task_id=callback_task_id(run_id, step, "escalate"),
        )


def over_budget(
    registry: Registry, run_id: str, step: str, token: str, exc: BudgetExceededError, work: StepWork
) -> None:
    """A model call was refused by the run's budget: the step waits for an operator (never
    retried on its own) and the run ends ``budget_exceeded`` or, if its budget says so, parks as
    an approval asking to raise the budget. Steps refused after the first only wait: the first
    decides, and approving the raise runs them all again."""
    spend = registry.spend(run_id)
    ask = spend is not None and spend.budget.on_exceeded == "approval"
    # Without a human to ask, every refused step ends the run in the same script that fails it
    # (the first wins): a waiter never sees the run pass through needs_attention.
    end_state = "" if ask else "budget_exceeded"
    role = work.plan.agent or ""
    escalated = registry.escalate(run_id, step, token, str(exc), "", work.attempt, role, end_state)
    if escalated == 1 + ADMITTED:
        dispatch_admitted(registry)
    if escalated and ask and exc.first:
        app.send_task(
            ESCALATE_TO_APPROVAL_TASK,
            kwargs={"run_id": run_id, "step": step, "error": str(exc), "kind": "budget"},
            task_id=callback_task_id(run_id, step, "budget"),
        )


def dispatch_admitted(registry: Registry) -> None:
    """Dispatch the runs that ending a run here admitted from the admission queues, and settle
    the parent steps of child runs that ended here (the coordinator's dispatch does both, when
    this process imported it; else the admitted runs are dispatched and the watchdog settles)."""
    _admitted_dispatchers[0](registry)


def _dispatch_admitted_runs(registry: Registry) -> None:
    for admitted in registry.take_admitted():
        dispatch(registry, admitted)


_admitted_dispatchers: list[Callable[[Registry], Any]] = [_dispatch_admitted_runs]


def set_admitted_dispatcher(dispatcher: Callable[[Registry], Any]) -> None:
    _admitted_dispatchers[0] = dispatcher


class LeaseKeeper:
    """Holds a step's lease while its body runs, so a short lease is safe for a long body and a
    crashed holder's lease still lapses quickly. One thread per process renews every lease the
    process holds (a thread per step would cost its start and join on every step)."""

    def __init__(self, registry: Registry, run_id: str, step: str, token: str) -> None:
        self.lease = (registry, run_id, step, token)

    def __enter__(self) -> LeaseKeeper:
        _renewer.hold(self.lease)
        return self

    def __exit__(self, *exc: object) -> None:
        _renewer.release(self.lease)


class _LeaseRenewer:
    def __init__(self) -> None:
        self._held: dict[tuple[Registry, str, str, str], None] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def hold(self, lease: tuple[Registry, str, str, str]) -> None:
        with self._lock:
            self._held[lease] = None
            # Started lazily, and again in a forked child (threads do not survive a fork).
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._renew, name="agentchord-leases", daemon=True)
                self._thread.start()

    def release(self, lease: tuple[Registry, str, str, str]) -> None:
        with self._lock:
            self._held.pop(lease, None)

    def _renew(self) -> None:
        while True:
            with self._lock:
                held = list(self._held)
            interval = min((registry.settings.step_lease_s / 3 for registry, *_ in held), default=1.0)
            time.sleep(interval)
            for lease in held:
                registry, run_id, step, token = lease
                with self._lock:
                    if lease not in self._held:
                        continue  # released meanwhile: its result is stored
                try:
                    registry.extend_lease(run_id, step, token)
                except Exception:
                    logger.warning("could not renew the lease of step %s of run %s", step, run_id)


_renewer = _LeaseRenewer()


def _checked_route(plan: StepPlan, result_json: str) -> str:
    """A router's choice ('' for other steps). It must be one of the branches its workflow
    declares: an illegal one is a failure in the event log, never a silent fall-through."""
    branches = plan.branches
    if not branches:
        return ""
    route = json.loads(result_json).get("route") if result_json.startswith("{") else None
    if route not in branches:
        raise PermanentError(f"router chose {route!r}; the workflow's branches are {', '.join(branches)}")
    return str(route)


def _to_json(output: Any) -> str:
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    try:
        return json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"agent output must be a pydantic model or JSON-serializable, got {type(output).__name__}: {exc}"
        ) from exc


# Set on the request by the worker's main process when the message arrives; Celery hands the
# request's fields to the pool process, where the task reads it as ``task.request.<name>``.
RECEIVED_AT = "agentchord_received_at"


@task_received.connect  # type: ignore[untyped-decorator]
def _record_received(request: Any = None, **_kwargs: Any) -> None:
    """Runs in the worker's main process when a message arrives: splits queue wait into the
    broker's part and the pool's part. The time (the worker's clock, not the server's) rides
    along to the pool process and is written with the step's start: no Redis call here."""
    if request is None or not str(getattr(request, "name", "")).startswith("agents."):
        return
    request_dict = getattr(request, "request_dict", None)
    if isinstance(request_dict, dict):
        request_dict[RECEIVED_AT] = f"{time.time():.6f}"


@task_unknown.connect  # type: ignore[untyped-decorator]
def _unregistered_role(message: Any = None, name: str = "", **_kwargs: Any) -> None:
    """A step sent to a worker that does not have its role (its module is not in this worker's
    AGENTCHORD_AGENT_MODULES): Celery drops the message; the step must not wait for ever, so it
    is handed to an operator with the reason (retry it once a worker has the role)."""
    if not name.startswith("agents.") or message is None:
        return
    try:
        _args, kwargs, _embed = message.decode()
        run_id, step = kwargs["run_id"], kwargs["step"]
    except Exception:
        logger.exception("an unregistered agent task %s could not be read", name)
        return
    role = name.removeprefix("agents.")
    error = (
        f"the worker that took step {step!r} has no role {role!r}: list the module defining it in "
        f"AGENTCHORD_AGENT_MODULES on the workers serving queue {role!r}, then retry the step"
    )
    registry_for(current_settings()).escalate(run_id, step, "*", error, "", 0, role)
