"""A global rate limit per provider and model (requests and tokens per window), shared by every
worker through Redis, so fifty workers together never exceed a provider's quota.

A sliding window: each admitted call is a member of a sorted set scored by its time and
carrying its token reservation; one Lua script checks and admits atomically (server clock).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis

# KEYS: window set.  ARGV: window_s, max_requests (0 = none), max_tokens (0 = none), tokens, member
# -> {0, admitted_at} when admitted, else {milliseconds until the oldest call leaves the window}
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local window, max_requests, max_tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count, used = #members / 2, 0
for i = 1, #members, 2 do used = used + tonumber(string.match(members[i], ':(%d+)$')) end
local over_requests = max_requests > 0 and count + 1 > max_requests
local over_tokens = max_tokens > 0 and used + tokens > max_tokens and count > 0
if over_requests or over_tokens then
  local oldest = tonumber(members[2])
  return {math.max(1, math.ceil((oldest + window - now) * 1000))}
end
redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. tokens)
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
return {0, string.format('%.6f', now)}
"""


@dataclass(frozen=True)
class RateLimit:
    requests: int | None
    tokens: int | None
    window_s: float = 60.0


class RateLimiter:
    """Admits calls to one provider/model within its limits; :meth:`acquire` blocks until admitted.

    Example:
        >>> limiter = RateLimiter(client, "agentchord:ratelimit:api.openai.com:gpt-4o", RateLimit(500, 200_000))
        >>> waited_s = limiter.acquire(tokens=1200)   # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis, key: str, limit: RateLimit) -> None:
        self.key = key
        self.limit = limit
        self._script = client.register_script(_ACQUIRE)

    def acquire(self, tokens: int = 0, max_wait_s: float = 600.0) -> float:
        """Wait until the call fits in the window; returns the seconds spent waiting."""
        return self.admit(tokens, max_wait_s)[0]

    def admit(self, tokens: int = 0, max_wait_s: float = 600.0) -> tuple[float, float]:
        """Like :meth:`acquire`; returns (seconds waited, admission time on the server clock)."""
        started = time.monotonic()
        member = uuid.uuid4().hex
        args: list[float | int | str] = [
            self.limit.window_s,
            self.limit.requests or 0,
            self.limit.tokens or 0,
            max(tokens, 0),
            member,
        ]
        while True:
            reply = self._script(keys=[self.key], args=args)
            wait_ms = int(reply[0])
            if wait_ms == 0:
                return time.monotonic() - started, float(reply[1])
            if time.monotonic() - started + wait_ms / 1000 > max_wait_s:
                from proj.errors import TransientModelError

                raise TransientModelError(self.key, f"rate limit: waited {max_wait_s:g}s", wait_ms / 1000)
            time.sleep(wait_ms / 1000)
