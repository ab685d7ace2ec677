"""Workflow versions' plans: stored once per content digest, cached in every process."""

from __future__ import annotations

import json

from proj.plan import RunPlan, parse_plan
from proj.registry._base import RegistryBase

_PLAN_CACHE_SIZE = 512

# The field of a stored plan that holds the workflow spec ("~" cannot start a step name).
SPEC_FIELD = "~spec"


class PlansMixin(RegistryBase):
    """Workflow versions' plans: stored once per content digest, cached in every process."""

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

    def workflow_version(self, digest: str) -> str:
        """The version a plan's workflow declares (``version:``), else the plan's digest. A plan
        never changes under its digest, so the answer is kept."""
        known = self._versions.get(digest)
        if known is None:
            raw = self.client.hget(self.keys.plan(digest), SPEC_FIELD) if digest else None
            declared = json.loads(raw).get("version") if raw else None
            known = str(declared or digest)
            if len(self._versions) >= _PLAN_CACHE_SIZE:
                self._versions.pop(next(iter(self._versions)))
            self._versions[digest] = known
        return known

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
