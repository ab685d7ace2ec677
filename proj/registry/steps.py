"""A step's life: claim and lease, store and hand off, retry, escalate, operator actions."""

from __future__ import annotations

import json
import time
from typing import Any

from proj.plan import RunPlan, StepPlan
from proj.registry._base import RegistryBase
from proj.registry.records import ADMITTED, BeginOutcome, FinishOutcome, StepWork, step_records_of


class StepsMixin(RegistryBase):
    """A step's life: claim and lease, store and hand off, retry, escalate, operator actions."""

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
        return FinishOutcome(bool(reply[0]), bool(reply[1]), claimed, reply[1] == ADMITTED)

    def open_map(self, run_id: str, step: str, members: int) -> bool:
        """Record that map ``step`` has ``members`` members (an empty map is done at once);
        False when it was opened before (a re-drive: send only the members still missing)."""
        return bool(self._open_map(keys=self._base(run_id), args=[step, members]))

    def finish_member(
        self,
        run_id: str,
        member: str,
        step: str,
        result_json: str,
        members: int,
        metadata: dict[str, Any],
        *,
        count_only: bool = False,
    ) -> tuple[bool, bool]:
        """Store map member ``member`` of ``step`` and count it; (stored, joined): joined when it
        was the last member, and the map step now has its list of results. ``count_only``: an
        operator's skip stored the member's output already; only count it."""
        args: list[Any] = [member, step, result_json, members, "count" if count_only else "store", len(metadata)]
        for name, value in metadata.items():
            args += [name, value]
        reply = self._finish_member(keys=[*self._base(run_id), self.run_keys(run_id).claim(member)], args=args)
        return bool(reply[0]), bool(reply[1])

    def map_members(self, run_id: str, step: str) -> int | None:
        """How many members map ``step`` has; None before its list arrived."""
        value = self.client.hget(self.run_keys(run_id).steps, f"{step}.members")
        return None if value is None else int(value)

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
        self,
        run_id: str,
        step: str,
        token: str,
        error: str,
        traceback: str,
        attempts: int,
        role: str = "",
        end_state: str = "",
    ) -> int:
        """Mark ``step`` failed and hand it to an operator: the run becomes ``needs_attention``;
        or, with ``end_state``, ends in that state in the same call. 0: nothing done (already
        failed, stored or ended); 1: escalated; 2: escalated and the run ended; 3: ..., and ending
        it admitted queued runs (the caller dispatches them)."""
        keys = [*self._base(run_id), self.run_keys(run_id).claim(step)]
        args: list[Any] = [step, token, error, traceback[-8000:], attempts, role or "unknown"]
        if end_state:
            args += [end_state, *self._ends()]
        return int(self._escalate(keys=keys, args=args))

    def operator_retry(self, run_id: str, step: str, actor: str) -> bool:
        return bool(self._operator_retry(keys=self._base(run_id), args=[step, actor]))

    def operator_skip(self, run_id: str, step: str, actor: str, output_json: str, joins: tuple[str, ...] = ()) -> bool:
        """Give a failed step an output. ``joins``: its successors that wait on several steps,
        in an inline workflow (their dependency counts include this result)."""
        return bool(self._operator_skip(keys=self._base(run_id), args=[step, actor, output_json, *joins]))

    def attention(self, run_id: str) -> set[str]:
        return set(self.client.smembers(self.run_keys(run_id).attention))

    def claim_holder(self, run_id: str, step: str) -> str | None:
        return self.client.get(self.run_keys(run_id).claim(step))  # type: ignore[no-any-return]

    def step_records(self, run_id: str) -> dict[str, dict[str, str]]:
        """Each step's metadata: ``{step: {field: value}}``."""
        return step_records_of(self.client.hgetall(self.run_keys(run_id).steps))
