"""What bench/throughput.py's workers run besides bench.tasks: a last task that stamps its finish."""

from __future__ import annotations

import time
from typing import Any

import redis

from proj.celery import app, current_settings

_done_client: redis.Redis | None = None


@app.task(name="bench.noop_done_at")  # type: ignore[untyped-decorator]
def noop_done_at(_results: Any, key: str, token: str) -> None:
    """Last task of the plain canvas: RPUSH ``"<token> <finish time>"`` (this host's clock, the
    one agentchord's run records use when Redis runs here too)."""
    global _done_client
    if _done_client is None:
        _done_client = redis.Redis.from_url(current_settings().resolved_redis_url)
    _done_client.rpush(key, f"{token} {time.time():.6f}")
