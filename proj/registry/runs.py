"""Runs: create, claim for dispatch, read, end, wait for the end, list and prune."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from proj.admission import DEFAULT_TENANT, Admission
from proj.registry.plans import PlansMixin
from proj.registry.records import TERMINAL_STATES, RunSnapshot


class RunsMixin(PlansMixin):
    """Runs: create, claim for dispatch, read, end, wait for the end, list and prune."""

    def create_run(
        self,
        run_id: str,
        workflow: str,
        fingerprint: str,
        input_json: str,
        plan_digest: str,
        idempotency_key: str | None,
        handoff_json: str = "",
        first_steps: tuple[str, ...] = (),
        budget_json: str = "",
        admission: Admission | None = None,
    ) -> tuple[bool, str, list[str]]:
        """Create a run of the plan stored as ``plan_digest`` (:meth:`store_plan`) and claim
        ``first_steps`` for dispatch, in one round trip; with an idempotency key already used,
        return ``(False, that run id, [that run's fingerprint])`` (``fingerprint``: what the key
        vouches for, the workflow version and input; '' when unknown). A run over its admission
        limits is created ``queued`` and claims nothing: ``(True, run id, ["*queued"])``."""
        idem_key = self.keys.idempotency(idempotency_key or run_id)
        admission = admission or Admission(DEFAULT_TENANT, None, None, "fair")
        # The runs index is pruned by the watchdog's sweep (prune_runs_index), not by starts.
        args: list[Any] = [run_id, workflow, fingerprint, input_json, "1" if idempotency_key else "0"]
        args += ["", handoff_json, plan_digest, len(first_steps), *first_steps, budget_json, *admission.args()]
        reply = self._start(keys=[*self._base(run_id), idem_key, self.keys.runs_index], args=args)
        return bool(reply[0]), str(reply[1]), [str(step) for step in reply[2:]]

    def take_admitted(self, batch: int = 100) -> list[str]:
        """Runs admitted from an admission queue and not yet dispatched (each is taken once)."""
        return list(self.client.lpop(self.keys.admitted, batch) or [])

    def admission_counts(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Running runs per tenant and per workflow, and queued runs per tenant (or ``*``, FIFO)."""
        k = self.keys
        tenants = {t: int(n) for t, n in self.client.hgetall(k.admission_tenants).items() if int(n)}
        workflows = {w: int(n) for w, n in self.client.hgetall(k.admission_workflows).items() if int(n)}
        lanes = self.client.lrange(k.admission_ring, 0, -1)
        queued = {lane: int(self.client.llen(k.admission_queue(lane))) for lane in lanes}
        return tenants, workflows, queued

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

    def finish_run(self, run_id: str, state: str, error: str = "") -> int:
        """Move a running (or queued) run to a terminal ``state`` once: 0 if it had ended already,
        1 if this call ended it, :data:`ADMITTED` if that also admitted queued runs (the caller
        dispatches them: :meth:`take_admitted`)."""
        return int(self._finish_run(keys=self._base(run_id), args=[state, error, *self._ends()]))

    def stalled_runs(self, idle_s: float, limit: int = 100) -> list[str]:
        """Active runs whose last progress is older than ``idle_s`` (server clock)."""
        before = self.server_time() - idle_s
        return list(self.client.zrangebyscore(self.keys.active_runs, "-inf", before, start=0, num=limit))

    def touch_active(self, run_id: str) -> None:
        self.client.zadd(self.keys.active_runs, {run_id: self.server_time()}, xx=True)

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

    def runs_page(
        self, limit: int, cursor: str | None = None, state: str = "", workflow: str = "", scan: int = 5000
    ) -> tuple[list[dict[str, str]], str | None]:
        """Runs newest first from the runs index, after ``cursor`` (what the previous page
        returned), keeping those in ``state`` and of ``workflow`` when given; and the cursor of the
        next page (None: no more). Reads at most ``scan`` index entries per call, so a filter that
        matches few runs pages through a large index in bounded steps, never a scan of everything."""
        high = "+inf"
        if cursor:
            score, _, _ = cursor.partition("|")
            high = f"({float(score)!r}"
        names = ("id", "workflow", "state", "created_at", "finished_at")
        rows: list[dict[str, str]] = []
        scanned, last = 0, cursor
        while scanned < scan:
            batch = self.client.zrevrangebyscore(
                self.keys.runs_index, high, "-inf", start=0, num=min(500, scan - scanned), withscores=True
            )
            if not batch:
                return rows, None
            with self.client.pipeline(transaction=False) as pipe:
                for run_id, _score in batch:
                    pipe.hmget(self.run_keys(run_id).run, list(names))
                records = pipe.execute()
            for (run_id, score), record in zip(batch, records, strict=True):
                scanned += 1
                last, high = f"{score!r}|{run_id}", f"({score!r}"
                row = dict(zip(names, record, strict=True))
                if row["id"] is None or (state and row["state"] != state) or (workflow and row["workflow"] != workflow):
                    continue
                rows.append(row)
                if len(rows) == limit:
                    return rows, last
        return rows, last

    def run_for_idempotency_key(self, key: str) -> str | None:
        """The run an idempotency key started, while the key lives."""
        value = self.client.get(self.keys.idempotency(key))
        return str(value).split(" ", 1)[0] if value else None

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
