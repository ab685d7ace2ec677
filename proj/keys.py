"""Every Redis key agentchord writes is built here, under one prefix.

A run's keys share the hash tag ``{run_id}`` so a Redis Cluster keeps them on one slot and the
registry's Lua scripts, which touch several of them at once, stay legal there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunKeys:
    """The keys of one run."""

    run: str  # hash: workflow, spec, input, state, timestamps, error, plan (its digest)
    results: str  # hash: step -> output (JSON); a field here means "step done"
    steps: str  # hash: "<step>.<field>" -> timing/metadata of each step
    dispatched: str  # set: steps whose task messages were sent
    events: str  # stream: the run's event log
    # hash of the decisions that choose which branches run: gate step -> approval state
    # (pending, approved, rejected, closed), router step -> "route:<branch>"
    approvals: str
    attention: str  # set: failed steps waiting for an operator (retry, skip or abort)

    def approval(self, step: str) -> str:
        """Hash: the approval checkpoint of gate ``step`` (request, deadline, decision)."""
        return f"{self.run}:approval:{step}"

    def loss_reported(self, step: str, attempt: int) -> str:
        """String with a TTL: a lost attempt of ``step`` was already handled (errbacks can repeat)."""
        return f"{self.run}:lost:{step}:{attempt}"

    @property
    def progress(self) -> str:
        """Stream, capped: what agents report while they run (``ctx.emit``, streamed model tokens).
        Not the event log: trimming it never drops a run's state. Expires with the run."""
        return f"{self.run}:progress"

    @property
    def ended_channel(self) -> str:
        """Pub/sub channel (not a key): the run ended or needs an operator (wakes ``Run.wait``)."""
        return f"{self.run}:ended"

    def claim(self, step: str) -> str:
        """String key with a lease: which delivery of ``step`` runs the agent body."""
        return f"{self.run}:claim:{step}"

    @property
    def durable(self) -> list[str]:
        """The keys that live as long as the run (all but claims, which carry their own TTL)."""
        return [
            self.run,
            self.results,
            self.steps,
            self.dispatched,
            self.events,
            self.approvals,
            self.attention,
        ]


@dataclass(frozen=True)
class Keys:
    """Key builder for one prefix."""

    prefix: str = "agentchord"

    def run(self, run_id: str) -> RunKeys:
        base = f"{self.prefix}:run:{{{run_id}}}"
        return RunKeys(
            run=base,
            results=f"{base}:results",
            steps=f"{base}:steps",
            dispatched=f"{base}:dispatched",
            events=f"{base}:events",
            approvals=f"{base}:approvals",
            attention=f"{base}:attention",
        )

    def plan(self, digest: str) -> str:
        """Hash: step -> step plan (JSON) of one workflow version, shared by all its runs and
        named by its content digest (:func:`coordinator.engine.compile.plan_digest`)."""
        return f"{self.prefix}:plan:{digest}"

    def idempotency(self, key: str) -> str:
        """String: a start idempotency key -> the run id it started."""
        return f"{self.prefix}:idem:{key}"

    @property
    def workers(self) -> str:
        """Hash: worker hostname -> its last heartbeat (queues, concurrency, in flight, seen at)."""
        return f"{self.prefix}:workers"

    def no_worker_reported(self, run_id: str, step: str) -> str:
        """String with a TTL: the run's ``no_worker`` event for ``step`` was written."""
        return f"{self.prefix}:no-worker:{run_id}:{step}"

    @property
    def pending_approvals(self) -> str:
        """Sorted set: pending approval ids scored by when they were requested."""
        return f"{self.prefix}:approvals:pending"

    @property
    def approval_deadlines(self) -> str:
        """Sorted set: approval ids scored by their deadline (server clock)."""
        return f"{self.prefix}:approvals:deadlines"

    @property
    def active_runs(self) -> str:
        """Sorted set: active run ids scored by their last progress (for the watchdog)."""
        return f"{self.prefix}:runs:active"

    @property
    def metrics(self) -> str:
        """Hash: counters and histogram buckets every worker adds to (read by /metrics)."""
        return f"{self.prefix}:metrics"

    @property
    def metrics_unfolded(self) -> str:
        """List: ended runs whose step measures the next scrape folds into :attr:`metrics`."""
        return f"{self.prefix}:metrics:unfolded"

    @property
    def escalations(self) -> str:
        """Stream: failed steps handed to operators (error, traceback, attempts, context)."""
        return f"{self.prefix}:escalations"

    def rate_limit(self, provider: str, model: str) -> str:
        """Sorted set: calls admitted to ``provider``/``model`` in the current window."""
        return f"{self.prefix}:ratelimit:{provider}:{model}"

    def auth_failures(self, client: str, minute: int) -> str:
        """Counter with a TTL: failed authentications from one client address in one minute."""
        return f"{self.prefix}:authfail:{client}:{minute}"

    def webhook_seen(self, webhook_id: str) -> str:
        """String with a TTL: an inbound webhook-id already accepted (the replay store)."""
        return f"{self.prefix}:webhook:seen:{webhook_id}"

    # Admission (proj/admission.py). The Lua prelude builds the same names from a run's key.
    @property
    def admission_tenants(self) -> str:
        """Hash: tenant -> its running runs (counted runs only: limits were set at their start)."""
        return f"{self.prefix}:admission:tenants"

    @property
    def admission_workflows(self) -> str:
        """Hash: workflow -> its running runs, all tenants together."""
        return f"{self.prefix}:admission:workflows"

    @property
    def admission_ring(self) -> str:
        """List: tenants with queued runs, in the order they take their next turn."""
        return f"{self.prefix}:admission:ring"

    def admission_queue(self, lane: str) -> str:
        """List: one tenant's queued runs, oldest first (lane ``*``: every tenant's, FIFO order)."""
        return f"{self.prefix}:admission:queue:{lane}"

    @property
    def admitted(self) -> str:
        """List: runs admitted from a queue that wait to be dispatched by whoever ends a run next."""
        return f"{self.prefix}:admission:admitted"

    @property
    def children_ended(self) -> str:
        """List: child runs that ended, whose parent step waits to be settled by whoever ended them."""
        return f"{self.prefix}:admission:children_ended"

    @property
    def runs_index(self) -> str:
        """Sorted set: run id scored by its start time, for listing."""
        return f"{self.prefix}:runs"
