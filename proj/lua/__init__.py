"""The registry's Lua scripts (``proj/lua/*.lua``): each transition is one atomic Redis round trip.

Every run script takes the same thirteen keys first (see ``Registry._base``): the run's durable
keys in :attr:`RunKeys.durable` order (run, results, steps, dispatched, events, approvals,
attention), then the global indexes (pending approvals, approval deadlines, active runs, the
escalation stream), the metrics hash and the list of runs whose measures are not yet folded
into it. A script's own extra keys follow, from ``KEYS[14]``. No script reads a step plan: plans
are stored once per workflow version and every process holds the ones it uses (the caller
passes what a script needs, such as a step's dependencies). Timestamps come
from the Redis server's clock (``TIME``), so times recorded by different machines share one clock.

What a clean run does is recorded once, in the run's and its steps' records (created, dispatched,
started, finished, by whom, how long): the event stream holds only what those records cannot
(retries, failures, operator actions, approvals, re-drives, refused duplicates), so a run with
none of those writes no stream at all. ``Registry.events`` merges both into one log.
"""

from __future__ import annotations

from importlib import resources

from proj.step_states import lua_table


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def load(name: str) -> str:
    """The full text of script ``name`` (its file's name without ``.lua``): the shared prelude,
    then the script. Read once, when this module is imported."""
    return _PRELUDE + "\n" + _read(name)


# The step state table (proj/step_states.py) first: every script checks its transitions against it.
_PRELUDE = lua_table() + _read("prelude")

START = load("start")
DISPATCH = load("dispatch")
BEGIN_STEP = load("begin_step")
FINISH_STEP = load("finish_step")
RETRY_LATER = load("retry_later")
ESCALATE = load("escalate")
OPERATOR_RETRY = load("operator_retry")
OPERATOR_SKIP = load("operator_skip")
FINISH_RUN = load("finish_run")
PARK = load("park")
DECIDE = load("decide")
HOLD_CANDIDATE = load("hold_candidate")
PROMOTE = load("promote")
NEXT_ROUND = load("next_round")
OPEN_MAP = load("open_map")
FINISH_MEMBER = load("finish_member")
# Touches one key only, so it has no prelude (which names the run's keys).
EXTEND_LEASE = _read("extend_lease")
EMIT = _read("emit")  # the run's progress stream and its record only: no prelude either
BUDGET = _read("budget")  # the run's record, event log and the metrics hash: no prelude
LINK_CHILD = _read("link_child")  # the parent's steps hash only: no prelude

SCRIPTS = {
    "start": START,
    "dispatch": DISPATCH,
    "begin_step": BEGIN_STEP,
    "finish_step": FINISH_STEP,
    "retry_later": RETRY_LATER,
    "escalate": ESCALATE,
    "operator_retry": OPERATOR_RETRY,
    "operator_skip": OPERATOR_SKIP,
    "finish_run": FINISH_RUN,
    "park": PARK,
    "decide": DECIDE,
    "hold_candidate": HOLD_CANDIDATE,
    "promote": PROMOTE,
    "next_round": NEXT_ROUND,
    "open_map": OPEN_MAP,
    "finish_member": FINISH_MEMBER,
    "extend_lease": EXTEND_LEASE,
    "emit": EMIT,
    "budget": BUDGET,
    "link_child": LINK_CHILD,
}
