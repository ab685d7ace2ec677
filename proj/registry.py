"""The shared registry in Redis: runs, step results, claims, timings and the event log.

Agents and coordinator callbacks are stateless; everything a run knows lives here, under the
run's namespace (see :mod:`proj.keys`). Step transitions are Lua scripts (:mod:`proj.lua`), so
each is one atomic round trip and duplicate deliveries cannot interleave.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis

from proj import lua
from proj.keys import Keys, RunKeys
from proj.plan import RunPlan, StepPlan, parse_plan
from proj.settings import Settings

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "rejected"})


@dataclass(frozen=True)
class StepWork:
    """What an agent task gets from :meth:`Registry.begin_step` when it owns the step."""

    plan: StepPlan
    input: dict[str, Any]
    dependencies: dict[str, Any]
    context_bytes: int
    attempt: int
    handoff: dict[str, Any] | None = None  # the run's handoff record, when the workflow keeps one


@dataclass(frozen=True)
class BeginOutcome:
    """Result of trying to claim a step: ``run``, ``done``, ``busy``, ``inactive``, ``missing``,
    ``failed`` (waits for an operator), ``exhausted`` (no attempts left) or ``illegal`` (its
    state allows no start: see proj.step_states)."""

    status: str
    work: StepWork | None = None
    state: str | None = None
    retry_in_ms: int = 0
    attempts: int = 0
    last_error: str = ""
    plan: StepPlan | None = None
    began_monotonic: float = 0.0


@dataclass(frozen=True)
class FinishOutcome:
    """What storing a step's result did: whether this call stored it, whether it ended the run,
    and the successors it claimed for dispatch (name and plan), which the caller must send."""

    stored: bool
    run_finished: bool = False
    claimed: tuple[tuple[str, StepPlan], ...] = ()


_PLAN_CACHE_SIZE = 512
# The field of a stored plan that holds the workflow spec ("~" cannot start a step name).
SPEC_FIELD = "~spec"


@dataclass(frozen=True)
class RunSnapshot:
    """What the coordinator needs to decide what is ready: one pipelined read."""

    state: str | None
    plan: RunPlan
    done: set[str]
    dispatched: set[str]
    # Decisions: gate step -> approval state, and router step -> "route:<branch>".
    approvals: dict[str, str] = field(default_factory=dict)
    traceparent: str = ""  # the run's OpenTelemetry trace context, when tracing is on
    plan_digest: str = ""  # names the stored plan of the run's workflow version

    @property
    def gates(self) -> dict[str, str]:
        """Approval gates only (without routers' choices)."""
        return {step: state for step, state in self.approvals.items() if not state.startswith("route:")}


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    at: float
    fields: dict[str, str] = field(default_factory=dict)


class Registry:
    """Registry operations over one Redis connection pool.

    Example:
        >>> registry = Registry.from_settings(Settings(redis_url="redis://127.0.0.1:6379/0"))
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        # Typed Any: with decode_responses=True replies are str, which redis-py's stubs can't see.
        self.client: Any = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._local = threading.local()
        # Plans by digest: immutable, so every process keeps those it has used (bounded).
        self._plans: dict[str, RunPlan] = {}
        self._start = client.register_script(lua.START)
        self._dispatch = client.register_script(lua.DISPATCH)
        self._begin = client.register_script(lua.BEGIN_STEP)
        self._finish = client.register_script(lua.FINISH_STEP)
        self._retry_later = client.register_script(lua.RETRY_LATER)
        self._escalate = client.register_script(lua.ESCALATE)
        self._operator_retry = client.register_script(lua.OPERATOR_RETRY)
        self._operator_skip = client.register_script(lua.OPERATOR_SKIP)
        self._extend_lease = client.register_script(lua.EXTEND_LEASE)
        self._finish_run = client.register_script(lua.FINISH_RUN)
        self._park = client.register_script(lua.PARK)
        self._decide = client.register_script(lua.DECIDE)
        self._hold_candidate = client.register_script(lua.HOLD_CANDIDATE)
        self._promote = client.register_script(lua.PROMOTE)
        self._next_round = client.register_script(lua.NEXT_ROUND)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        client = redis.Redis.from_url(settings.resolved_redis_url, decode_responses=True, health_check_interval=30)
        return cls(client, settings)

    def run_keys(self, run_id: str) -> RunKeys:
        return self.keys.run(run_id)

    def _base(self, run_id: str) -> list[str]:
        """The keys every run script takes first (see proj.lua)."""
        k = self.keys
        return [
            *self.run_keys(run_id).durable,
            k.pending_approvals,
            k.approval_deadlines,
            k.active_runs,
            k.escalations,
            k.metrics,
            k.metrics_unfolded,
        ]

    def _ends(self) -> list[int]:
        return [self.settings.finished_run_ttl_s, self.settings.idempotency_ttl_s]

    # -- starting and dispatching ------------------------------------------------------------

    def store_plan(self, digest: str, plan: dict[str, str], spec_json: str = "") -> None:
        """Keep a workflow version's plan (and the spec it was compiled from) for ``plan_ttl_s``
        more: written the first time, only its TTL refreshed after that (one command per start)."""
        key, ttl = self.keys.plan(digest), self.settings.plan_ttl_s
        if not self.client.expire(key, ttl):
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={**plan, SPEC_FIELD: spec_json} if spec_json else plan)
                pipe.expire(key, ttl)
                pipe.execute()

    def keep_plan(self, digest: str) -> None:
        """Push a stored plan's expiry ``plan_ttl_s`` ahead (the watchdog does it for open runs)."""
        self.client.expire(self.keys.plan(digest), self.settings.plan_ttl_s)

    def plan_by_digest(self, digest: str) -> RunPlan:
        """A stored plan, steps in the order the workflow declared them; {} if it is gone."""
        cached = self._plans.get(digest)
        if cached is not None:
            return cached
        stored = self.client.hgetall(self.keys.plan(digest))
        steps = {step: parse_plan(raw) for step, raw in stored.items() if step != SPEC_FIELD}
        plan = dict(sorted(steps.items(), key=lambda item: item[1].index))
        if plan:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.pop(next(iter(self._plans)))
            self._plans[digest] = plan
        return plan

    def spec_of(self, run_id: str) -> str:
        """The workflow spec (JSON) the run was started from, as stored with its plan."""
        digest = self.plan_digest_of(run_id)
        return str(self.client.hget(self.keys.plan(digest), SPEC_FIELD) or "") if digest else ""

    def plan_digest_of(self, run_id: str) -> str:
        return str(self.client.hget(self.run_keys(run_id).run, "plan") or "")

    def plan_of(self, run_id: str, digest: str = "") -> RunPlan:
        """The run's step plans in the order the workflow declared them; {} for no such run.
        ``digest``: the run's plan digest when the caller has it (a step message carries it)."""
        digest = digest or self.plan_digest_of(run_id)
        return self.plan_by_digest(digest) if digest else {}

    def create_run(
        self,
        run_id: str,
        workflow: str,
        spec_json: str,
        input_json: str,
        plan_digest: str,
        idempotency_key: str | None,
        handoff_json: str = "",
        first_steps: tuple[str, ...] = (),
    ) -> tuple[bool, str, list[str]]:
        """Create a run of the plan stored as ``plan_digest`` (:meth:`store_plan`) and claim
        ``first_steps`` for dispatch, in one round trip; with an idempotency key already used,
        return ``(False, that run id, [])``."""
        idem_key = self.keys.idempotency(idempotency_key or run_id)
        # The runs index is pruned by the watchdog's sweep (prune_runs_index), not by starts.
        args: list[Any] = [run_id, workflow, spec_json, input_json, "1" if idempotency_key else "0"]
        args += ["", handoff_json, plan_digest, len(first_steps), *first_steps]
        reply = self._start(keys=[*self._base(run_id), idem_key, self.keys.runs_index], args=args)
        return bool(reply[0]), str(reply[1]), [str(step) for step in reply[2:]]

    def claim_dispatch(self, run_id: str, steps: list[str]) -> list[str]:
        """Mark ``steps`` dispatched; returns those this caller claimed (each is claimed once)."""
        if not steps:
            return []
        return list(self._dispatch(keys=self._base(run_id), args=steps))

    def snapshot(self, run_id: str) -> RunSnapshot:
        rk = self.run_keys(run_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(rk.run, ["state", "plan", "traceparent"])
            pipe.hkeys(rk.results)
            pipe.smembers(rk.dispatched)
            pipe.hgetall(rk.approvals)
            (state, digest, traceparent), done, dispatched, approvals = pipe.execute()
        return RunSnapshot(
            state=state,
            plan=self.plan_by_digest(digest) if digest else {},
            done=set(done),
            dispatched=set(dispatched),
            approvals=dict(approvals),
            traceparent=traceparent or "",
            plan_digest=digest or "",
        )

    # -- a step's life -----------------------------------------------------------------------

    def begin_step(
        self, run_id: str, step: str, token: str, worker: str, plan: StepPlan, received_at: str = ""
    ) -> BeginOutcome:
        """Claim ``step`` (its ``plan``) with a lease and read its context, in one round trip
        (``received_at``: when the worker took the message, by its clock, recorded with the start)."""
        began = time.perf_counter()
        rk = self.run_keys(run_id)
        lease_ms = self.settings.step_lease_s * 1000
        args: list[Any] = [step, token, lease_ms, worker, received_at, plan.retry.max_attempts, *plan.after]
        reply = self._begin(keys=[*self._base(run_id), rk.claim(step)], args=args)
        status = reply[0]
        if status == "busy":
            return BeginOutcome("busy", retry_in_ms=max(int(reply[1]), 0))
        if status == "inactive":
            return BeginOutcome("inactive", state=reply[1])
        if status == "exhausted":
            return BeginOutcome("exhausted", attempts=int(reply[1]), last_error=reply[2], plan=plan)
        if status != "run":
            return BeginOutcome(status)
        input_raw, attempt, handoff_raw, *pairs = reply[1:]
        dependencies = {pairs[i]: json.loads(pairs[i + 1]) for i in range(0, len(pairs), 2)}
        context_bytes = len(input_raw) + sum(len(pairs[i + 1]) for i in range(0, len(pairs), 2))
        work = StepWork(
            plan,
            json.loads(input_raw),
            dependencies,
            context_bytes,
            int(attempt),
            json.loads(handoff_raw) if handoff_raw else None,
        )
        return BeginOutcome("run", work=work, began_monotonic=began)

    def extend_lease(self, run_id: str, step: str, token: str) -> bool:
        """Keep holding ``step`` while its body runs (the lease lapses if the holder dies)."""
        claim = self.run_keys(run_id).claim(step)
        return bool(self._extend_lease(keys=[claim], args=[token, self.settings.step_lease_s * 1000]))

    def first_loss_report(self, run_id: str, step: str, attempt: int) -> bool:
        """True the first time attempt ``attempt`` of ``step`` is reported lost."""
        key = self.run_keys(run_id).loss_reported(step, attempt)
        return bool(self.client.set(key, "1", nx=True, ex=self.settings.finished_run_ttl_s))

    def release_claim(self, run_id: str, step: str) -> None:
        """Drop the step's lease whoever holds it: only for a holder known to be dead."""
        self.client.delete(self.run_keys(run_id).claim(step))

    def finish_step(
        self,
        run_id: str,
        step: str,
        result_json: str,
        metadata: dict[str, Any],
        plans: RunPlan,
        *,
        route: str = "",
        handoff_patch: str = "",
    ) -> FinishOutcome:
        """Store a step's result and claim what it made ready, in one round trip.

        With ``StepPlan.inline`` (a workflow without gates, routers or validators) the script
        itself decides which successors are ready and whether the run is over; otherwise it only
        stores, and the coordinator's dispatch decides. Not stored: another delivery stored first.
        ``plans``: the run's plan (every step's), for the successors' dependencies and messages.
        """
        plan = plans[step]
        args: list[Any] = [step, run_id, result_json, route, handoff_patch, "1" if plan.inline else "0"]
        args += [plan.run_steps, *self._ends(), len(metadata)]
        for name, value in metadata.items():
            args += [name, value]
        if plan.inline:
            for successor, deps in plan.successors.items():
                args += [successor, len(deps)]
        reply = self._finish(keys=[*self._base(run_id), self.run_keys(run_id).claim(step)], args=args)
        claimed = tuple((str(name), plans[name]) for name in reply[2:])
        return FinishOutcome(bool(reply[0]), bool(reply[1]), claimed)

    def steps_in_state(self, run_id: str, steps: list[str], state: str) -> list[str]:
        """Those of ``steps`` whose state is ``state`` now (one HMGET)."""
        if not steps:
            return []
        states = self.client.hmget(self.run_keys(run_id).steps, [f"{step}.state" for step in steps])
        return [step for step, current in zip(steps, states, strict=True) if current == state]

    def retry_later(self, run_id: str, step: str, token: str, error: str, attempt: int, delay_s: float) -> bool:
        """A transient failure with attempts left: free the step for its retry (False: its state
        allows no retry, see proj.step_states)."""
        keys = [*self._base(run_id), self.run_keys(run_id).claim(step)]
        return bool(self._retry_later(keys=keys, args=[step, token, error, attempt, f"{delay_s:.3f}"]))

    def escalate(
        self, run_id: str, step: str, token: str, error: str, traceback: str, attempts: int, role: str = ""
    ) -> bool:
        """Mark ``step`` failed and hand it to an operator: the run becomes ``needs_attention``."""
        keys = [*self._base(run_id), self.run_keys(run_id).claim(step)]
        args: list[Any] = [step, token, error, traceback[-8000:], attempts, role or "unknown"]
        return bool(self._escalate(keys=keys, args=args))

    def operator_retry(self, run_id: str, step: str, actor: str) -> bool:
        return bool(self._operator_retry(keys=self._base(run_id), args=[step, actor]))

    def operator_skip(self, run_id: str, step: str, actor: str, output_json: str, joins: tuple[str, ...] = ()) -> bool:
        """Give a failed step an output. ``joins``: its successors that wait on several steps,
        in an inline workflow (their dependency counts include this result)."""
        return bool(self._operator_skip(keys=self._base(run_id), args=[step, actor, output_json, *joins]))

    def attention(self, run_id: str) -> set[str]:
        return set(self.client.smembers(self.run_keys(run_id).attention))

    def stalled_runs(self, idle_s: float, limit: int = 100) -> list[str]:
        """Active runs whose last progress is older than ``idle_s`` (server clock)."""
        before = self.server_time() - idle_s
        return list(self.client.zrangebyscore(self.keys.active_runs, "-inf", before, start=0, num=limit))

    def touch_active(self, run_id: str) -> None:
        self.client.zadd(self.keys.active_runs, {run_id: self.server_time()}, xx=True)

    def claim_holder(self, run_id: str, step: str) -> str | None:
        return self.client.get(self.run_keys(run_id).claim(step))  # type: ignore[no-any-return]

    def finish_run(self, run_id: str, state: str, error: str = "") -> bool:
        """Move a running run to a terminal ``state`` once; True if this call did it."""
        return bool(self._finish_run(keys=self._base(run_id), args=[state, error, *self._ends()]))

    # -- approvals ---------------------------------------------------------------------------

    def park(self, run_id: str, step: str, approval_id: str, request_json: str, timeout_s: float | None) -> bool:
        """Write the approval checkpoint and park the run; True if this call parked it."""
        keys = [*self._base(run_id), self.run_keys(run_id).approval(step)]
        timeout = "" if timeout_s is None else f"{timeout_s:.6f}"
        return bool(self._park(keys=keys, args=[step, approval_id, request_json, timeout]))

    def decide(
        self,
        run_id: str,
        step: str,
        approval_id: str,
        decision: str,
        *,
        comment: str,
        data_json: str,
        actor: str,
        output_json: str,
        reject_ends_run: bool,
        due_before: float | None = None,
    ) -> list[str]:
        """Apply one decision atomically; only the first decision on a pending approval wins."""
        keys = [*self._base(run_id), self.run_keys(run_id).approval(step)]
        args: list[Any] = [step, approval_id, decision, comment, data_json, actor, output_json]
        args += ["1" if reject_ends_run else "0", *self._ends()]
        args.append("" if due_before is None else f"{due_before:.6f}")
        return [str(part) for part in self._decide(keys=keys, args=args)]

    def approval(self, run_id: str, step: str) -> dict[str, str]:
        return dict(self.client.hgetall(self.run_keys(run_id).approval(step)))

    def pending_approval_ids(self, limit: int = 100) -> list[str]:
        return list(self.client.zrange(self.keys.pending_approvals, 0, limit - 1))

    def due_approval_ids(self, now: float | None = None, limit: int = 100) -> list[str]:
        """Approvals whose deadline has passed (by the Redis server clock unless ``now`` is given)."""
        if now is None:
            seconds, micros = self.client.time()
            now = seconds + micros / 1e6
        return list(self.client.zrangebyscore(self.keys.approval_deadlines, "-inf", now, start=0, num=limit))

    def server_time(self) -> float:
        seconds, micros = self.client.time()
        return float(seconds + micros / 1e6)

    def add_event(self, run_id: str, type_: str, **fields: str) -> None:
        """Append an event that is not part of a step transition (e.g. a notification)."""
        self.client.xadd(self.run_keys(run_id).events, {"type": type_, "at": f"{self.server_time():.6f}", **fields})

    def claim_webhook_id(self, webhook_id: str, ttl_s: int) -> bool:
        """The replay store: True the first time an inbound webhook-id is seen within ``ttl_s``."""
        return bool(self.client.set(self.keys.webhook_seen(webhook_id), "1", nx=True, ex=ttl_s))

    # -- validator gates ---------------------------------------------------------------------

    def hold_candidate(self, run_id: str, step: str, result_json: str, metadata: dict[str, Any]) -> int:
        """Keep a low-confidence output as the step's candidate (not its result); returns the
        round, or 0 if the step's state does not allow it (the refusal is in the event log)."""
        args: list[Any] = [step, result_json]
        for name, value in metadata.items():
            args += [name, value]
        keys = [*self._base(run_id), self.run_keys(run_id).claim(step)]
        return int(self._hold_candidate(keys=keys, args=args))

    def validation_state(self, run_id: str, step: str) -> tuple[str | None, int, list[str]]:
        """(candidate JSON, round, the last critique's issues) of a validated step."""
        candidate, round_no, feedback = self.client.hmget(
            self.run_keys(run_id).steps, [f"{step}.candidate", f"{step}.round", f"{step}.feedback"]
        )
        return candidate, int(round_no or 1), json.loads(feedback) if feedback else []

    def promote_candidate(self, run_id: str, step: str, check: str, verdict_json: str) -> bool:
        """The validator passed it: the candidate becomes the step's result (once)."""
        keys = [*self._base(run_id), self.run_keys(run_id).claim(check)]
        return bool(self._promote(keys=keys, args=[step, check, verdict_json]))

    def next_round(self, run_id: str, step: str, check: str, issues: list[str]) -> int:
        """The validator failed it: the generator runs again with the critique; the new round
        (0: the step was not waiting for a verdict). The validator step is left ``judged``."""
        keys = [*self._base(run_id), self.run_keys(run_id).claim(check)]
        return int(self._next_round(keys=keys, args=[step, check, json.dumps(issues)]))

    # -- reading -----------------------------------------------------------------------------

    def run_record(self, run_id: str) -> dict[str, str]:
        return dict(self.client.hgetall(self.run_keys(run_id).run))

    def results_of(self, run_id: str, steps: list[str]) -> dict[str, Any]:
        """Outputs of ``steps`` that have one (one HMGET)."""
        if not steps:
            return {}
        values = self.client.hmget(self.run_keys(run_id).results, steps)
        return {step: json.loads(value) for step, value in zip(steps, values, strict=True) if value is not None}

    def results(self, run_id: str) -> dict[str, Any]:
        raw = self.client.hgetall(self.run_keys(run_id).results)
        return {step: json.loads(value) for step, value in raw.items()}

    def step_records(self, run_id: str) -> dict[str, dict[str, str]]:
        """Each step's metadata: ``{step: {field: value}}``."""
        return step_records_of(self.client.hgetall(self.run_keys(run_id).steps))

    def events(self, run_id: str) -> list[Event]:
        """The run's log, oldest first: its lifecycle (started, each step dispatched and
        finished, ended), read from the run's and steps' records, merged with the event stream,
        which holds everything else (retries, failures, approvals, operator actions, ...)."""
        rk = self.run_keys(run_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.xrange(rk.events)
            pipe.hmget(rk.run, ["created_at", "finished_at", "state"])
            pipe.hgetall(rk.steps)
            entries, (created, finished, state), raw_steps = pipe.execute()
        ranked = [(_event(entry_id, fields), _STREAM_RANK) for entry_id, fields in entries]
        if created:
            ranked.append((Event("run_started", "run_started", float(created)), 0))
        for step, record in step_records_of(raw_steps).items():
            if "dispatched_at" in record:
                event = Event(
                    f"step_dispatched:{step}", "step_dispatched", float(record["dispatched_at"]), {"step": step}
                )
                ranked.append((event, 3))
            if "result_bytes" in record and "finished_at" in record:
                event = Event(f"step_finished:{step}", "step_finished", float(record["finished_at"]), {"step": step})
                ranked.append((event, 1))
        if finished:
            ranked.append((Event("run_finished", "run_finished", float(finished), {"state": state or ""}), 4))
        # One script writes several of these at one server time: keep the order it acts in.
        ranked.sort(key=lambda item: (item[0].at, item[1]))
        return [event for event, _ in ranked]

    def wait_event(self, run_id: str, types: set[str], timeout_s: float, after: str = "0-0") -> Event | None:
        """The first event of one of ``types`` after event id ``after`` (past or future), or None.

        The stream is the signal (XREAD BLOCK): this wakes as soon as the event is written.
        """
        rk = self.run_keys(run_id)
        deadline = time.monotonic() + timeout_s
        last_id = after
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return None
            # Short blocks so a deleted/expired stream or a reconnect cannot wedge the wait.
            reply = self.client.xread({rk.events: last_id}, block=min(remaining_ms, 1000), count=100)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    if fields.get("type") in types:
                        return _event(entry_id, fields)
            if not reply and self.client.hget(rk.run, "state") is None:
                return None

    def wait_ended(self, run_id: str, timeout_s: float) -> str | None:
        """Block until the run is in a terminal state or needs an operator; its state, or None
        after ``timeout_s``. Woken by the scripts' publish on the run's channel (subscribed
        before the state is read, so an end between the two is not missed)."""
        deadline = time.monotonic() + timeout_s
        try:
            return self._wait_ended(run_id, deadline)
        except redis.ConnectionError:
            # The kept subscriber connection died (a Redis restart): once more on a new one.
            self._local.pubsub = None
            return self._wait_ended(run_id, deadline)

    def _wait_ended(self, run_id: str, deadline: float) -> str | None:
        rk = self.run_keys(run_id)
        pubsub = self._pubsub()
        pubsub.subscribe(rk.ended_channel)
        try:
            while True:
                state = self.client.hget(rk.run, "state")
                if state is None or state in TERMINAL_STATES or state == "needs_attention":
                    return state  # type: ignore[no-any-return]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Short waits so that a lost publish cannot wedge the wait; any message (even a
                # late one for an earlier run) only makes it read the state again.
                pubsub.get_message(timeout=min(remaining, 1.0))
        finally:
            if pubsub.connection is not None:
                pubsub.unsubscribe(rk.ended_channel)

    def _pubsub(self) -> Any:
        """This thread's subscriber connection, kept open between waits (a new connection per
        wait would cost a connect and its handshake commands every time)."""
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None:
            pubsub = self._local.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        return pubsub

    def prune_runs_index(self, batch: int = 1000) -> int:
        """Drop from the runs index the runs whose keys have expired (old enough to have, and
        gone); returns how many. The watchdog's sweep calls it, so the index stays true whether
        or not new runs start."""
        oldest_alive = self.server_time() - self.settings.finished_run_ttl_s
        candidates = self.client.zrangebyscore(self.keys.runs_index, "-inf", oldest_alive, start=0, num=batch)
        if not candidates:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            for run_id in candidates:
                pipe.exists(self.run_keys(run_id).run)
            alive = pipe.execute()
        gone = [run_id for run_id, exists in zip(candidates, alive, strict=True) if not exists]
        if gone:
            self.client.zrem(self.keys.runs_index, *gone)
        return len(gone)

    def list_runs(self, limit: int = 20) -> list[dict[str, str]]:
        """The newest runs still in the registry, newest first."""
        ids = self.client.zrevrange(self.keys.runs_index, 0, max(limit * 2, limit) - 1)
        with self.client.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hmget(self.run_keys(run_id).run, ["id", "workflow", "state", "created_at", "finished_at"])
            rows = pipe.execute()
        names = ("id", "workflow", "state", "created_at", "finished_at")
        found = [dict(zip(names, row, strict=True)) for row in rows if row[0] is not None]
        return found[:limit]


# Where stream events sort among lifecycle events written by the same script at the same time:
# run_started 0, step_finished 1, the stream's 2, step_dispatched 3, run_finished 4.
_STREAM_RANK = 2


def step_records_of(raw_steps: dict[str, str]) -> dict[str, dict[str, str]]:
    """The steps hash (``<step>.<field>``) as ``{step: {field: value}}``."""
    records: dict[str, dict[str, str]] = {}
    for name, value in raw_steps.items():
        step, _, attr = name.rpartition(".")
        records.setdefault(step, {})[attr] = value
    return records


def _event(entry_id: str, fields: dict[str, str]) -> Event:
    rest = {k: v for k, v in fields.items() if k not in ("type", "at")}
    return Event(entry_id, fields.get("type", ""), float(fields.get("at", 0.0)), rest)


@lru_cache(maxsize=8)
def _registry_for(url: str, settings: Settings) -> Registry:
    return Registry.from_settings(settings)


def registry_for(settings: Settings) -> Registry:
    """The process-wide registry for ``settings`` (one connection pool per URL and settings)."""
    return _registry_for(settings.resolved_redis_url, settings)
