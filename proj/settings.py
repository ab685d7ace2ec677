"""Settings: one pydantic-settings class, read from ``AGENTCHORD_*`` environment variables.

Settings are read once, at the edge (the Celery app, the CLI, the test fixtures), and passed
down. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DAY_S = 24 * 3600


class Settings(BaseSettings):
    """Every knob of agentchord. Each field is ``AGENTCHORD_<FIELD>`` in the environment.

    Example:
        >>> Settings(redis_url="redis://127.0.0.1:6379/0").finished_run_ttl_s
        604800
    """

    model_config = SettingsConfigDict(env_prefix="AGENTCHORD_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        description="Redis for the broker, Celery results and the registry. Unset: `up`/`demo` "
        "start a private redis-server on a free port.",
    )
    key_prefix: str = Field(default="agentchord", description="Prefix of every registry key.")
    finished_run_ttl_s: int = Field(default=7 * DAY_S, gt=0, description="How long a finished run's keys are kept.")
    idempotency_ttl_s: int = Field(
        default=7 * DAY_S, gt=0, description="How long a start idempotency key maps to its run."
    )
    celery_result_ttl_s: int = Field(
        default=DAY_S, gt=0, description="TTL of Celery's own task results (small references)."
    )
    step_lease_s: int = Field(
        default=300,
        gt=0,
        description="Lease of a step claim: a second copy of a step's task waits this long for "
        "the first before it may take the step over.",
    )
    agent_modules: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Extra modules that define agent roles (comma-separated), imported by "
        "workers and by `start` for validation.",
    )
    simulated_latency_ms: float = Field(default=0.0, ge=0, description="Latency the offline model adds to every call.")
    llm_backend: str = Field(default="offline", description="Model backend; `offline` for now.")
    worker_prefetch_multiplier: int = Field(
        default=1, ge=1, description="Messages a worker process reserves; 1 suits long tasks."
    )
    broker_visibility_timeout_s: int = Field(
        default=3600,
        gt=0,
        description="Redis broker visibility timeout: an unacked message is redelivered after it.",
    )

    @field_validator("agent_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def resolved_redis_url(self) -> str:
        """The Redis URL to use; raises when none is configured (the local stack sets one)."""
        if not self.redis_url:
            from proj.errors import ConfigurationError

            raise ConfigurationError(
                "no Redis configured: set AGENTCHORD_REDIS_URL, or use `agentchord up`/`demo`, "
                "which start a private redis-server"
            )
        return self.redis_url
