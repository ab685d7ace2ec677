"""What bench/tax.py's workers run: an agent with simulated model latency and plain Celery
tasks that sleep the same time.

The latency is the step's ``latency_ms`` param (the plain tasks take it as an argument), so
one worker serves every latency a benchmark asks for.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from agents import StepContext, agent
from proj.celery import app, current_settings

SLEEPY_QUEUE = "sleepy"
_done_client: redis.Redis | None = None


@agent("sleepy")
def sleepy(ctx: StepContext) -> dict[str, Any]:
    """An agent whose model call takes ``params.latency_ms`` and nothing else."""
    time.sleep(float(ctx.params.get("latency_ms", 200)) / 1000)  # simulated model latency, on purpose
    return {}


@app.task(name="bench.sleep")  # type: ignore[untyped-decorator]
def sleep(*_args: Any, seconds: float) -> None:
    """A plain Celery task that takes as long as the agent's model call."""
    time.sleep(seconds)


@app.task(name="bench.sleep_done")  # type: ignore[untyped-decorator]
def sleep_done(_results: Any, key: str, seconds: float) -> None:
    """Last task of the plain canvas: sleep, then signal the waiting client (RPUSH)."""
    global _done_client
    time.sleep(seconds)
    if _done_client is None:
        _done_client = redis.Redis.from_url(current_settings().resolved_redis_url)
    _done_client.rpush(key, 1)
