"""A step's states and the transitions between them: the one table every state change follows.

Each transition is carried out by one registry script (``proj/lua/*.lua``), atomically; the
script reads the step's current state and acts only from a state this table allows, so a
late, duplicated or out-of-order request is refused (an ``illegal_transition`` event records
it) instead of half-applied. The scripts get this table as Lua when they are loaded
(:func:`lua_table`), so the table here is the only place it is written down.

A step with no stored state is ``pending``. ``skipped`` is never stored: it follows from the
run's decisions (``coordinator.engine.compile.skipped_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StepState(StrEnum):
    PENDING = "pending"  # not claimed yet (no record)
    DISPATCHED = "dispatched"  # claimed; its message is sent
    RUNNING = "running"  # a worker holds its lease and runs the body
    RETRYING = "retrying"  # a transient failure: sent again after a backoff
    SUCCEEDED = "succeeded"  # its result is stored (written together with the result, only then)
    FAILED = "failed"  # given up: waits for an operator (retry, skip) or the run's end
    WAITING_APPROVAL = "waiting_approval"  # a gate, or a failure handed to a human
    REJECTED = "rejected"  # a gate rejected, ending the run
    VALIDATING = "validating"  # a candidate output waits for its validator
    JUDGED = "judged"  # a validator step that gave a FAIL verdict; runs again on the next candidate


S = StepState


@dataclass(frozen=True)
class Transition:
    """``sources`` -> ``target``, carried out by the registry operation ``name``."""

    name: str
    sources: frozenset[StepState]
    target: StepState


def _t(name: str, sources: set[StepState], target: StepState) -> Transition:
    return Transition(name, frozenset(sources), target)


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        # Claimed for dispatch (start, a finished dependency, the coordinator's dispatch).
        _t("claim", {S.PENDING}, S.DISPATCHED),
        # A worker takes the step: a first delivery, a retry, a lapsed lease taken over, a
        # validator checking the next candidate.
        _t("begin", {S.PENDING, S.DISPATCHED, S.RETRYING, S.RUNNING, S.JUDGED}, S.RUNNING),
        # The body's result is stored. Also from dispatched/retrying: a holder whose lease lapsed
        # (and whose step was re-sent or marked for a retry) still stores the first result.
        _t("finish", {S.RUNNING, S.DISPATCHED, S.RETRYING}, S.SUCCEEDED),
        _t("retry_later", {S.RUNNING, S.DISPATCHED, S.RETRYING}, S.RETRYING),
        _t("escalate", {S.RUNNING, S.DISPATCHED, S.RETRYING, S.VALIDATING}, S.FAILED),
        _t("operator_retry", {S.FAILED}, S.DISPATCHED),
        _t("operator_skip", {S.FAILED}, S.SUCCEEDED),
        _t("park", {S.DISPATCHED, S.FAILED}, S.WAITING_APPROVAL),
        # A decision: approved (or rejected into an ``on_reject`` branch) goes on; a plain reject
        # ends the run.
        _t("decide", {S.WAITING_APPROVAL}, S.SUCCEEDED),
        _t("reject", {S.WAITING_APPROVAL}, S.REJECTED),
        # A budget approval approved: the step that hit the limit runs again, under the raised budget.
        _t("decide_retry", {S.WAITING_APPROVAL}, S.DISPATCHED),
        # The validator loop: a low-confidence output is held, then promoted (PASS) or the
        # generator runs again with the critique (FAIL).
        _t("hold_candidate", {S.RUNNING}, S.VALIDATING),
        _t("promote", {S.VALIDATING}, S.SUCCEEDED),
        _t("next_round", {S.VALIDATING}, S.DISPATCHED),
    )
}


def allowed(transition: str, current: StepState | str | None) -> bool:
    """May ``transition`` happen to a step in state ``current`` (None: no record, pending)?"""
    return StepState(current or S.PENDING) in TRANSITIONS[transition].sources


def lua_table() -> str:
    """The table as a Lua literal, for the scripts' prelude: ``{finish = {running = true, ...}}``."""
    entries = []
    for name, transition in TRANSITIONS.items():
        sources = ", ".join(f"{state.value} = true" for state in sorted(transition.sources))
        entries.append(f"  {name} = {{{sources}}}")
    return "local TRANSITIONS = {\n" + ",\n".join(entries) + "\n}\n"
