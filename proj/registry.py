"""The shared registry in Redis: runs, step results, claims, timings and the event log.

Agents and coordinator callbacks are stateless; everything a run knows lives here, under the
run's namespace (see :mod:`proj.keys`). Step transitions are Lua scripts (:mod:`proj.lua`), so
each is one atomic round trip and duplicate deliveries cannot interleave.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis

from proj import lua
from proj.keys import Keys, RunKeys
from proj.settings import Settings

RUN_FINISHED = "run_finished"
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class StepWork:
    """What an agent task gets from :meth:`Registry.begin_step` when it owns the step."""

    plan: dict[str, Any]
    input: dict[str, Any]
    dependencies: dict[str, Any]
    context_bytes: int


@dataclass(frozen=True)
class BeginOutcome:
    """Result of trying to claim a step: ``run``, ``done``, ``busy``, ``inactive`` or ``missing``."""

    status: str
    work: StepWork | None = None
    state: str | None = None
    retry_in_ms: int = 0


@dataclass(frozen=True)
class RunSnapshot:
    """What the coordinator needs to decide what is ready: one pipelined read."""

    state: str | None
    plan: dict[str, dict[str, Any]]
    done: set[str]
    dispatched: set[str]


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
        self._start = client.register_script(lua.START)
        self._dispatch = client.register_script(lua.DISPATCH)
        self._begin = client.register_script(lua.BEGIN_STEP)
        self._finish = client.register_script(lua.FINISH_STEP)
        self._fail = client.register_script(lua.FAIL_STEP)
        self._finish_run = client.register_script(lua.FINISH_RUN)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        client = redis.Redis.from_url(settings.resolved_redis_url, decode_responses=True, health_check_interval=30)
        return cls(client, settings)

    def run_keys(self, run_id: str) -> RunKeys:
        return self.keys.run(run_id)

    def _ends(self) -> list[int]:
        return [self.settings.finished_run_ttl_s, self.settings.idempotency_ttl_s]

    # -- starting and dispatching ------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        workflow: str,
        spec_json: str,
        input_json: str,
        plan: dict[str, str],
        idempotency_key: str | None,
    ) -> tuple[bool, str]:
        """Create a run; with an idempotency key already used, return ``(False, that run id)``."""
        rk = self.run_keys(run_id)
        idem_key = self.keys.idempotency(idempotency_key or run_id)
        prune_before = time.time() - self.settings.finished_run_ttl_s
        args: list[Any] = [run_id, workflow, spec_json, input_json, "1" if idempotency_key else "0"]
        args.append(f"{prune_before:.6f}")
        for step, step_plan in plan.items():
            args += [step, step_plan]
        created, existing = self._start(keys=[*rk.durable, idem_key, self.keys.runs_index], args=args)
        return bool(created), str(existing)

    def claim_dispatch(self, run_id: str, steps: list[str]) -> list[str]:
        """Mark ``steps`` dispatched; returns those this caller claimed (each is claimed once)."""
        if not steps:
            return []
        return list(self._dispatch(keys=self.run_keys(run_id).durable, args=steps))

    def snapshot(self, run_id: str) -> RunSnapshot:
        rk = self.run_keys(run_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(rk.run, "state")
            pipe.hgetall(rk.plan)
            pipe.hkeys(rk.results)
            pipe.smembers(rk.dispatched)
            state, plan, done, dispatched = pipe.execute()
        steps = {step: json.loads(raw) for step, raw in plan.items()}
        return RunSnapshot(
            state=state,
            # Redis hashes are unordered; keep the order the workflow declared its steps in.
            plan=dict(sorted(steps.items(), key=lambda item: item[1].get("index", 0))),
            done=set(done),
            dispatched=set(dispatched),
        )

    # -- a step's life -----------------------------------------------------------------------

    def begin_step(self, run_id: str, step: str, token: str, worker: str) -> BeginOutcome:
        """Claim ``step`` with a lease and read its context, in one round trip."""
        rk = self.run_keys(run_id)
        lease_ms = self.settings.step_lease_s * 1000
        reply = self._begin(keys=[*rk.durable, rk.claim(step)], args=[step, token, lease_ms, worker])
        status = reply[0]
        if status == "busy":
            return BeginOutcome("busy", retry_in_ms=max(int(reply[1]), 0))
        if status == "inactive":
            return BeginOutcome("inactive", state=reply[1])
        if status != "run":
            return BeginOutcome(status)
        step_plan_raw, input_raw, *pairs = reply[1:]
        dependencies = {pairs[i]: json.loads(pairs[i + 1]) for i in range(0, len(pairs), 2)}
        context_bytes = len(input_raw) + sum(len(pairs[i + 1]) for i in range(0, len(pairs), 2))
        work = StepWork(json.loads(step_plan_raw), json.loads(input_raw), dependencies, context_bytes)
        return BeginOutcome("run", work=work)

    def finish_step(self, run_id: str, step: str, token: str, result_json: str, metadata: dict[str, Any]) -> bool:
        """Store a step's result; False when another delivery stored one first."""
        rk = self.run_keys(run_id)
        args: list[Any] = [step, token, result_json]
        for name, value in metadata.items():
            args += [name, value]
        return bool(self._finish(keys=[*rk.durable, rk.claim(step)], args=args))

    def fail_step(self, run_id: str, step: str, token: str, error: str) -> bool:
        """Record a step failure and end the run ``failed``; True if this call ended it."""
        rk = self.run_keys(run_id)
        args: list[Any] = [step, token, error, *self._ends()]
        return bool(self._fail(keys=[*rk.durable, rk.claim(step)], args=args))

    def finish_run(self, run_id: str, state: str, error: str = "") -> bool:
        """Move a running run to a terminal ``state`` once; True if this call did it."""
        rk = self.run_keys(run_id)
        return bool(self._finish_run(keys=rk.durable, args=[state, error, *self._ends()]))

    # -- reading -----------------------------------------------------------------------------

    def run_record(self, run_id: str) -> dict[str, str]:
        return dict(self.client.hgetall(self.run_keys(run_id).run))

    def results(self, run_id: str) -> dict[str, Any]:
        raw = self.client.hgetall(self.run_keys(run_id).results)
        return {step: json.loads(value) for step, value in raw.items()}

    def step_records(self, run_id: str) -> dict[str, dict[str, str]]:
        """Each step's metadata: ``{step: {field: value}}``."""
        records: dict[str, dict[str, str]] = {}
        for name, value in self.client.hgetall(self.run_keys(run_id).steps).items():
            step, _, attr = name.rpartition(".")
            records.setdefault(step, {})[attr] = value
        return records

    def events(self, run_id: str, after: str = "-") -> list[Event]:
        entries = self.client.xrange(self.run_keys(run_id).events, min=after)
        return [_event(entry_id, fields) for entry_id, fields in entries]

    def wait_finished(self, run_id: str, timeout_s: float) -> str | None:
        """Block on the run's event stream until it finishes; its final state, or None on timeout.

        The stream is the signal (XREAD BLOCK), so this wakes as soon as the run ends.
        """
        rk = self.run_keys(run_id)
        deadline = time.monotonic() + timeout_s
        last_id = "0-0"
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return None
            # Short blocks so a deleted/expired stream or a reconnect cannot wedge the wait.
            reply = self.client.xread({rk.events: last_id}, block=min(remaining_ms, 1000), count=100)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    if fields.get("type") == RUN_FINISHED:
                        return str(fields.get("state"))
            if not reply and self.client.hget(rk.run, "state") is None:
                return None

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


def _event(entry_id: str, fields: dict[str, str]) -> Event:
    rest = {k: v for k, v in fields.items() if k not in ("type", "at")}
    return Event(entry_id, fields.get("type", ""), float(fields.get("at", 0.0)), rest)


@lru_cache(maxsize=8)
def _registry_for(url: str, settings: Settings) -> Registry:
    return Registry.from_settings(settings)


def registry_for(settings: Settings) -> Registry:
    """The process-wide registry for ``settings`` (one connection pool per URL and settings)."""
    return _registry_for(settings.resolved_redis_url, settings)
