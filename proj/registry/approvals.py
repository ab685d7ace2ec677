"""Approval gates: park, decide (exactly one decision wins), list, the webhook replay store."""

from __future__ import annotations

from typing import Any

from proj.registry._base import RegistryBase


class ApprovalsMixin(RegistryBase):
    """Approval gates: park, decide (exactly one decision wins), list, the webhook replay store."""

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
        retry: bool = False,
    ) -> list[str]:
        """Apply one decision atomically; only the first decision on a pending approval wins.
        ``retry``: a budget approval (approve runs the step again; reject ends the run)."""
        keys = [*self._base(run_id), self.run_keys(run_id).approval(step)]
        args: list[Any] = [step, approval_id, decision, comment, data_json, actor, output_json]
        args += ["1" if reject_ends_run else "0", *self._ends()]
        args.append("" if due_before is None else f"{due_before:.6f}")
        args.append("retry" if retry else "output")
        return [str(part) for part in self._decide(keys=keys, args=args)]

    def approval(self, run_id: str, step: str) -> dict[str, str]:
        return dict(self.client.hgetall(self.run_keys(run_id).approval(step)))

    def pending_approval_ids(self, limit: int = 100, after: tuple[float, str] | None = None) -> list[tuple[float, str]]:
        """Pending approvals as (requested_at, id), oldest first (ties by id); ``after``: the
        last pair of the previous page. A position, not an offset: decisions between two pages
        neither skip nor repeat an approval."""
        if after is None:
            return [(s, a) for a, s in self.client.zrange(self.keys.pending_approvals, 0, limit - 1, withscores=True)]
        # Ties on the time are rare (microseconds): fetch a few more and skip what is not after.
        rows = self.client.zrangebyscore(
            self.keys.pending_approvals, after[0], "+inf", start=0, num=limit + 64, withscores=True
        )
        return [(s, a) for a, s in rows if (s, a) > after][:limit]

    def due_approval_ids(self, now: float | None = None, limit: int = 100) -> list[str]:
        """Approvals whose deadline has passed (by the Redis server clock unless ``now`` is given)."""
        if now is None:
            seconds, micros = self.client.time()
            now = seconds + micros / 1e6
        return list(self.client.zrangebyscore(self.keys.approval_deadlines, "-inf", now, start=0, num=limit))

    def auth_failures(self, client: str, add: bool = False) -> int:
        """Failed authentications from ``client`` this minute (server clock); ``add``: count one more."""
        key = self.keys.auth_failures(client, int(self.server_time() // 60))
        if not add:
            return int(self.client.get(key) or 0)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = pipe.execute()
        return int(count)

    def webhook_id_seen(self, webhook_id: str) -> bool:
        """Was this inbound webhook-id spent already (within its replay window)?"""
        return bool(self.client.exists(self.keys.webhook_seen(webhook_id)))

    def claim_webhook_id(self, webhook_id: str, ttl_s: int) -> bool:
        """The replay store: True the first time an inbound webhook-id is seen within ``ttl_s``."""
        return bool(self.client.set(self.keys.webhook_seen(webhook_id), "1", nx=True, ex=ttl_s))
