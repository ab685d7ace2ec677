"""What every part of the registry shares: the Redis client, the keys, the scripts."""

from __future__ import annotations

import threading
from typing import Any

import redis

from proj import lua
from proj.keys import Keys, RunKeys
from proj.plan import RunPlan
from proj.settings import Settings


class RegistryBase:
    """The connection, settings, key builder and loaded scripts (one per transition)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        # Typed Any: with decode_responses=True replies are str, which redis-py's stubs can't see.
        self.client: Any = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._local = threading.local()
        # Plans by digest: immutable, so every process keeps those it has used (bounded).
        self._plans: dict[str, RunPlan] = {}
        self._versions: dict[str, str] = {}  # plan digest -> the workflow version it declares
        self._start = client.register_script(lua.START)
        self._dispatch = client.register_script(lua.DISPATCH)
        self._begin = client.register_script(lua.BEGIN_STEP)
        self._finish = client.register_script(lua.FINISH_STEP)
        self._retry_later = client.register_script(lua.RETRY_LATER)
        self._escalate = client.register_script(lua.ESCALATE)
        self._operator_retry = client.register_script(lua.OPERATOR_RETRY)
        self._operator_skip = client.register_script(lua.OPERATOR_SKIP)
        self._extend_lease = client.register_script(lua.EXTEND_LEASE)
        self._emit = client.register_script(lua.EMIT)
        self._budget = client.register_script(lua.BUDGET)
        self._finish_run = client.register_script(lua.FINISH_RUN)
        self._park = client.register_script(lua.PARK)
        self._decide = client.register_script(lua.DECIDE)
        self._hold_candidate = client.register_script(lua.HOLD_CANDIDATE)
        self._promote = client.register_script(lua.PROMOTE)
        self._next_round = client.register_script(lua.NEXT_ROUND)
        self._open_map = client.register_script(lua.OPEN_MAP)
        self._finish_member = client.register_script(lua.FINISH_MEMBER)
        self._link_child = client.register_script(lua.LINK_CHILD)

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

    def server_time(self) -> float:
        seconds, micros = self.client.time()
        return float(seconds + micros / 1e6)
