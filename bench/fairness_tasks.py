"""What bench/fairness.py's workers run: a step that works a fixed time, as an agent and as a
plain Celery task that stamps when it started."""

from __future__ import annotations

import time
from typing import Any

import redis

from agents import StepContext, agent
from coordinator import Step, Workflow
from proj.celery import app, current_settings

_client: redis.Redis | None = None


@agent("nap")
def nap(ctx: StepContext) -> dict[str, Any]:
    """Works ``ms`` milliseconds (a stand-in for a short model call)."""
    time.sleep(float(ctx.params.get("ms", 10)) / 1000)  # simulated work, on purpose
    return {}


@app.task(name="bench.nap_stamped")  # type: ignore[untyped-decorator]
def nap_stamped(key: str, token: str, ms: float) -> None:
    """The same work as plain Celery: RPUSH ``"<token> <start time>"`` then work ``ms``."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(current_settings().resolved_redis_url)
    _client.rpush(key, f"{token} {time.time():.6f}")
    time.sleep(ms / 1000)  # simulated work, on purpose


def nap_workflow(ms: float) -> Workflow:
    return Workflow(name="nap", steps=[Step(name="work", agent="nap", params={"ms": ms})])
