"""Retry policy and failure classification: all retry behaviour is decided here, nowhere else.

Transient failures (connection errors, timeouts, time limits, model 429/5xx, and anything
raised as :class:`TransientError`) are retried with exponential backoff and jitter until the
policy's attempts run out; everything else is permanent. Either way a step that will not be
retried is escalated to an operator: the run becomes ``needs_attention``, never silently failed.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from proj.errors import PermanentError, TransientError


class RetryPolicy(BaseModel):
    """How often and how patiently a step is retried after transient failures.

    Example:
        >>> RetryPolicy(max_attempts=5, backoff_s=0.5).delay_s(attempt=3, jitter=0.0)
        2.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100, description="Body executions before escalating.")
    backoff_s: float = Field(default=1.0, ge=0, description="Delay before the second attempt.")
    backoff_max_s: float = Field(default=60.0, ge=0, description="Cap of the exponential backoff.")
    jitter: float = Field(default=0.2, ge=0, le=1, description="Random +/- fraction applied to each delay.")

    def delay_s(self, attempt: int, jitter: float | None = None) -> float:
        """Delay before attempt ``attempt + 1``, after ``attempt`` attempts failed."""
        base = min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)
        spread = self.jitter if jitter is None else jitter
        return float(max(0.0, base * (1 + random.uniform(-spread, spread))))


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same step later may succeed."""
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    name = type(exc).__name__
    # Celery's soft limit, redis-py's and httpx's connection/timeouts: matched by name so this
    # module needs none of those imports.
    if name in {"SoftTimeLimitExceeded", "TimeLimitExceeded", "ReadTimeout", "ConnectTimeout", "PoolTimeout"}:
        return True
    module = type(exc).__module__
    if module.startswith("redis") and name in {"ConnectionError", "TimeoutError", "BusyLoadingError"}:
        return True
    if module.startswith("httpx") and name in {"ConnectError", "ReadError", "WriteError", "RemoteProtocolError"}:
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)
