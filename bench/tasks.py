"""What the benchmark workers run: an instant agent role and plain Celery no-op tasks."""

from __future__ import annotations

from typing import Any

import redis

from agents import StepContext, agent
from coordinator import Step, Workflow
from proj.celery import app, current_settings

_done_client: redis.Redis | None = None


@agent("instant")
def instant(ctx: StepContext) -> dict[str, Any]:
    """An agent that does no work: what is left is coordination."""
    return {}


@agent("fan_planner")
def fan_planner(ctx: StepContext) -> dict[str, Any]:
    """The list a map fans out over: ``params.n`` items."""
    return {"items": list(range(int(ctx.params.get("n", 0))))}


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(*_args: Any, **_kwargs: Any) -> None:
    """A plain Celery task that does nothing."""


@app.task(name="bench.noop_done")  # type: ignore[untyped-decorator]
def noop_done(_results: Any, key: str) -> None:
    """Last task of the plain canvas: signal the waiting client (like agentchord's stream)."""
    global _done_client
    if _done_client is None:
        _done_client = redis.Redis.from_url(current_settings().resolved_redis_url)
    _done_client.rpush(key, 1)


# The code-review diamond with instant agents: what is left of its latency is coordination.
INSTANT_DIAMOND = Workflow(
    name="instant_diamond",
    steps=[
        Step(name="review", agent="instant"),
        Step(name="tests", agent="instant", after=["review"]),
        Step(name="docs", agent="instant", after=["review"]),
        Step(name="merge", agent="instant", after=["tests", "docs"]),
    ],
)


def fan_out(n: int) -> Workflow:
    """plan -> one instant member per item (a map of ``n``) -> join: agentchord's side of a chord."""
    return Workflow(
        name=f"fan_out_{n}",
        steps=[
            Step(name="plan", agent="fan_planner", params={"n": n}),
            Step(name="each", agent="instant", after=["plan"], map="plan.items"),
            Step(name="join", agent="instant", after=["each"]),
        ],
    )
