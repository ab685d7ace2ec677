"""A run's lineage: reruns (the outputs a rerun reuses from its original) and child runs (a step
that runs a whole workflow), with the links both ways."""

from __future__ import annotations

import time
from dataclasses import dataclass

from proj.registry.runs import RunsMixin


@dataclass(frozen=True)
class ReusedOutput:
    """A step output a rerun takes from the run it reruns instead of running the step again."""

    result_json: str
    input_hash: str
    agent_version: str


class RerunsMixin(RunsMixin):
    def raw_results(self, run_id: str) -> dict[str, str]:
        """Each stored output as the JSON it was stored as (a rerun copies it byte for byte)."""
        return dict(self.client.hgetall(self.run_keys(run_id).results))

    def seed_reused(
        self,
        run_id: str,
        original_id: str,
        from_step: str,
        reused: dict[str, ReusedOutput],
        deps_done: dict[str, int],
    ) -> None:
        """Before anything of rerun ``run_id`` is dispatched: store the outputs it reuses (each
        step done, marked reused from ``original_id``), count them as done dependencies of the
        steps that follow (``deps_done``: step -> how many of its dependencies are reused, what
        the step path's join counter needs), and link both runs. One transaction."""
        rk, original = self.run_keys(run_id), self.run_keys(original_id)
        at = f"{time.time():.6f}"
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(rk.run, mapping={"rerun_of": original_id, "rerun_from": from_step})
            for step, output in reused.items():
                pipe.hset(rk.results, step, output.result_json)
                pipe.hset(
                    rk.steps,
                    mapping={
                        f"{step}.state": "succeeded",
                        f"{step}.finished_at": at,
                        f"{step}.reused_from": original_id,
                        f"{step}.input_hash": output.input_hash,
                        f"{step}.agent_version": output.agent_version,
                        f"{step}.result_bytes": len(output.result_json.encode()),
                    },
                )
                pipe.sadd(rk.dispatched, step)
                pipe.xadd(rk.events, {"type": "step_reused", "step": step, "from_run": original_id, "at": at})
            for step, count in deps_done.items():
                pipe.hset(rk.steps, f"{step}.deps_done", count)
            pipe.xadd(rk.events, {"type": "rerun_of", "run": original_id, "from_step": from_step, "at": at})
            pipe.execute()
        # The original keeps a link too, in its event log, which expires with its record (a
        # fast run may have no log yet: XADD creates it, and it gets the record's TTL).
        ttl = int(self.client.ttl(original.run))
        if ttl > 0:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(original.events, {"type": "rerun", "run": run_id, "from_step": from_step, "at": at})
                pipe.expire(original.events, ttl)
                pipe.execute()


class ChildrenMixin(RerunsMixin):
    """Child runs (a step that runs a whole workflow): the links both ways and their ends."""

    def link_parent(self, run_id: str, parent_run: str, parent_step: str) -> None:
        """Before any step of child ``run_id`` is sent: whose step it is (so its end reaches it)."""
        self.client.hset(self.run_keys(run_id).run, mapping={"parent_run": parent_run, "parent_step": parent_step})

    def link_child(self, run_id: str, step: str, child_id: str) -> None:
        """``step`` of ``run_id`` runs as child run ``child_id`` (running, unless it ended already)."""
        self._link_child(keys=[self.run_keys(run_id).steps], args=[step, child_id])

    def take_ended_children(self, batch: int = 100) -> list[str]:
        """Child runs that ended and whose parent step was not yet settled (each taken once)."""
        return list(self.client.lpop(self.keys.children_ended, batch) or [])
