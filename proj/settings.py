"""Settings: one pydantic-settings class, read from ``AGENTCHORD_*`` environment variables.

Settings are read once, at the edge (the Celery app, the CLI, the test fixtures), and passed
down. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from proj.budget import Budget
from proj.credentials import ApiToken, parse_token

DAY_S = 24 * 3600


# A tenant name: what `start(..., tenant=...)` accepts and admission keys are built from.
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
TENANT_RULE = "1 to 64 letters, digits or _.@-, starting with a letter or digit"

# The shortest API token or webhook secret accepted (after the ``whsec_`` prefix).
MIN_SECRET_CHARS = 16


class Settings(BaseSettings):
    """Every knob of agentchord. Each field is ``AGENTCHORD_<FIELD>`` in the environment.

    Example:
        >>> Settings(redis_url="redis://127.0.0.1:6379/0").finished_run_ttl_s
        604800
    """

    # hide_input_in_errors: a rejected setting (a weak token, say) is never echoed in the error.
    # env_ignore_empty: `KEY=` (as deploy/.env.example lists optional settings) means "unset".
    # env_file: every entry point (Python, `celery -A proj`, `agentchord`) run in a directory where
    # `agentchord up` runs finds its stack there (environment variables still win).
    model_config = SettingsConfigDict(
        env_prefix="AGENTCHORD_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        env_ignore_empty=True,
        env_file=".agentchord/stack.env",
    )

    redis_url: str | None = Field(
        default=None,
        description="Redis for the broker, Celery results and the registry. Unset: `up`/`demo` "
        "start a private redis-server on a free port.",
    )
    redis_sentinel_master: str | None = Field(
        default=None, description="With a sentinel:// Redis URL: the name of the master the Sentinels monitor."
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None,
        description="With a sentinel:// Redis URL: the Sentinels' own password (the URL's is the master's).",
    )
    redis_ca_file: str | None = Field(
        default=None, description="With a rediss:// (TLS) Redis URL: the CA certificate file that signed the server's."
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker if not the Redis URL: amqp://user:password@host:5672/vhost for RabbitMQ "
        "(quorum queues, one per role). Results and the registry stay in Redis.",
    )
    key_prefix: str = Field(default="agentchord", description="Prefix of every registry key.")
    finished_run_ttl_s: int = Field(default=7 * DAY_S, gt=0, description="How long a finished run's keys are kept.")
    plan_ttl_s: int = Field(
        default=30 * DAY_S,
        gt=0,
        description="How long a workflow version's stored plan outlives the last start of that version "
        "(runs read it; a run still open after this long without a newer start of its version cannot go on).",
    )
    idempotency_ttl_s: int = Field(
        default=7 * DAY_S, gt=0, description="How long a start idempotency key maps to its run."
    )
    celery_result_ttl_s: int = Field(
        default=DAY_S, gt=0, description="TTL of Celery's own task results (small references)."
    )
    step_lease_s: int = Field(
        default=30,
        gt=0,
        description="Lease on a running step, renewed while its body runs: a copy of the step's task "
        "takes over at most this long after the process running it died.",
    )
    map_max_items: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="A map step runs at most this many members; a longer list waits for an operator.",
    )
    retry_max_attempts: int = Field(default=3, ge=1, description="Default body executions of a step before escalating.")
    retry_backoff_s: float = Field(default=1.0, ge=0, description="Default delay before the second attempt (doubles).")
    retry_backoff_max_s: float = Field(default=60.0, ge=0, description="Default cap of the retry backoff.")
    step_time_limit_s: float = Field(
        default=600.0, gt=0, description="Default hard time limit of a step (the process is killed)."
    )
    step_soft_time_limit_s: float | None = Field(
        default=None, gt=0, description="Default soft time limit (a retryable error); unset: 90% of the hard one."
    )
    acks_late: bool = Field(
        default=True,
        description="Ack agent messages after the step ran. Never turn off in production: it exists so the "
        "chaos benchmark's negative control can show the work it loses.",
    )
    watchdog_interval_s: float = Field(default=30.0, gt=0, description="How often the beat runs the watchdog.")
    watchdog_stall_s: float = Field(
        default=120.0,
        ge=0,
        description="A running run with no progress for this long is re-driven from the registry; 0 turns "
        "the watchdog off.",
    )
    agent_modules: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Extra modules that define agent roles (comma-separated), imported by "
        "workers and by `start` for validation.",
    )
    simulated_latency_ms: float = Field(default=0.0, ge=0, description="Latency the offline model adds to every call.")
    simulated_cache_block_tokens: int = Field(
        default=16,
        ge=0,
        description="The offline model simulates a provider's prompt prefix cache (shared by every worker through "
        "Redis) in blocks of this many tokens; 0 turns it off. Real providers cache in larger blocks.",
    )
    simulated_cache_ttl_s: int = Field(
        default=300, gt=0, description="How long the simulated prefix cache keeps a prefix."
    )
    llm_backend: str = Field(default="offline", description="Model backend: `offline` (default) or `openai`.")
    role_backends: dict[str, str] = Field(
        default_factory=dict, description='Per-role backend overrides as JSON: {"reviewer": "openai"}.'
    )
    llm_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="OpenAI-compatible API base (vLLM: http://host:8000/v1, Ollama: http://host:11434/v1).",
    )
    llm_api_key: SecretStr | None = Field(default=None, description="API key of the OpenAI-compatible server.")
    llm_model: str = Field(default="gpt-4o-mini", description="Model name sent to the server.")
    role_models: dict[str, str] = Field(
        default_factory=dict, description='Per-role model overrides as JSON: {"merger": "gpt-4o"}.'
    )
    llm_temperature: float = Field(default=0.2, ge=0, le=2, description="Sampling temperature.")
    llm_max_tokens: int = Field(default=1024, gt=0, description="Max completion tokens per call.")
    llm_timeout_s: float = Field(default=60.0, gt=0, description="HTTP timeout of one model call.")
    llm_json_mode: str = Field(
        default="schema",
        pattern="^(schema|object|off)$",
        description="How structured answers are requested: `schema` (response_format json_schema), `object` "
        "(json_object), or `off` (prompt only).",
    )
    llm_repair_attempts: int = Field(
        default=1, ge=0, le=3, description="Re-asks when a structured answer is not valid JSON for its schema."
    )
    llm_requests_per_minute: int | None = Field(
        default=None, gt=0, description="Global request limit per provider and model, shared through Redis."
    )
    llm_tokens_per_minute: int | None = Field(
        default=None, gt=0, description="Global token limit per provider and model, shared through Redis."
    )
    llm_rate_window_s: float = Field(default=60.0, gt=0, description="Window of the rate limits (a minute).")
    model_prices: dict[str, tuple[float, ...]] = Field(
        default_factory=lambda: dict[str, tuple[float, ...]](offline=(0.0, 0.0, 0.0)),
        description="Price per million prompt, completion and (optional) cached prompt tokens, per model, as "
        'JSON: {"gpt-4o": [2.5, 10.0, 1.25]}. A step\'s cost is computed and stored when it finishes.',
    )
    default_budget: Budget | None = Field(
        default=None,
        description="Budget of runs whose start and workflow set none, as JSON: "
        '{"max_cost_usd": 0.5, "max_model_calls": 40} (see proj/budget.py).',
    )
    # -- admission: tenants and fairness (proj/admission.py) ------------------------------------
    max_running_per_tenant: int | None = Field(
        default=None, ge=1, description="Most running runs per tenant; more wait as `queued` (unset: no limit)."
    )
    max_running_per_workflow: int | None = Field(
        default=None, ge=1, description="Most running runs per workflow, all tenants together (unset: no limit)."
    )
    tenant_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description='Per-tenant overrides of the tenant limit, as JSON: {"acme": 20}.'
    )
    workflow_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description='Per-workflow overrides of the workflow limit, as JSON: {"triage": 4}.'
    )
    admission_order: Literal["fair", "fifo"] = Field(
        default="fair",
        description="How queued runs are admitted: `fair` (tenants take turns) or `fifo` (one queue, "
        "oldest first; the baseline the fairness benchmark compares with).",
    )
    worker_prefetch_multiplier: int = Field(
        default=1, ge=1, description="Messages a worker process reserves; 1 suits long tasks."
    )
    broker_visibility_timeout_s: int = Field(
        default=3600,
        gt=0,
        description="Redis broker visibility timeout: an unacked message is redelivered after it.",
    )

    # -- human approval: the HTTP API, webhooks in and out, deadlines -------------------------
    api_host: str = Field(default="127.0.0.1", description="Address `agentchord api` listens on.")
    api_port: int = Field(default=8000, ge=0, le=65535, description="Port `agentchord api` listens on.")
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL of the API as reviewers reach it; resume URLs are built from it.",
    )
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Bearer tokens accepted by the API, comma-separated: name:scope+scope:secret "
        "(scopes start, read, approve, operate) or a bare secret (every scope).",
    )
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Standard Webhooks secrets (whsec_...) accepted on inbound requests, "
        "comma-separated: old and new are both valid during a rotation. The first signs outbound "
        "notifications.",
    )
    api_docs: bool = Field(
        default=True, description="Serve /docs, /redoc and /openapi.json (turn off in production if unwanted)."
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description="Signs the web console's session cookies; by default derived from AGENTCHORD_API_TOKENS.",
    )
    console_session_ttl_s: int = Field(default=8 * 3600, gt=0, description="How long a console login lasts.")
    progress_maxlen: int = Field(
        default=2000, ge=10, description="Entries kept per run of agents' progress and streamed tokens (approximately)."
    )
    stream_tokens: bool = Field(
        default=False,
        description="Models stream their tokens to the run's progress stream as they arrive (the console shows them).",
    )
    worker_heartbeat_s: float = Field(
        default=5.0, gt=0, description="How often a worker announces its queues; gone after three missed."
    )
    sse_max_s: float = Field(
        default=300.0, gt=0, description="Longest one event stream connection stays open (clients reconnect)."
    )
    auth_failures_per_minute: int = Field(
        default=30, ge=1, description="Failed authentications one client may make per minute; then 429."
    )
    webhook_tolerance_s: int = Field(
        default=300, gt=0, le=300, description="Max age/skew of an inbound webhook-timestamp."
    )
    max_body_bytes: int = Field(default=65536, gt=0, description="Largest request body the API accepts.")
    approval_webhook_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="URLs that get a signed POST when a run parks at an approval (comma-separated).",
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, description="Delivery attempts of one outbound notification (5xx/timeouts)."
    )
    notify_backoff_s: float = Field(
        default=2.0, gt=0, description="First retry delay of a notification; doubles each attempt."
    )
    deadline_sweep_interval_s: float = Field(
        default=5.0, gt=0, description="How often the beat schedule sweeps approval deadlines."
    )

    # -- telemetry ------------------------------------------------------------------------------
    otel_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); unset: off."
    )
    otel_service_name: str = Field(default="agentchord", description="service.name of exported spans.")
    otel_batch_delay_ms: int = Field(default=5000, gt=0, description="How long spans are batched before export.")

    @field_validator("agent_modules", "api_tokens", "webhook_secrets", "approval_webhook_urls", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("api_tokens", "webhook_secrets", mode="after")
    @classmethod
    def _strong_enough(cls, value: tuple[SecretStr, ...], info: Any) -> tuple[SecretStr, ...]:
        """A guessable credential is refused at start (its value is never shown)."""
        for secret in value:
            raw = secret.get_secret_value().removeprefix("whsec_")
            if info.field_name == "api_tokens":
                raw = parse_token(secret).secret.get_secret_value()
            if len(raw) < MIN_SECRET_CHARS:
                name = f"AGENTCHORD_{str(info.field_name).upper()}"
                raise ValueError(f"{name}: every entry needs at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("model_prices", mode="after")
    @classmethod
    def _prices_have_two_or_three_rates(cls, value: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        for model, rates in value.items():
            if len(rates) not in (2, 3) or any(rate < 0 for rate in rates):
                raise ValueError(
                    f"AGENTCHORD_MODEL_PRICES[{model!r}]: give [prompt, completion] or [prompt, completion, cached] "
                    "prices per million tokens, none negative"
                )
        return value

    @field_validator("tenant_limits", mode="after")
    @classmethod
    def _tenant_names(cls, value: dict[str, int]) -> dict[str, int]:
        for tenant in value:
            if not TENANT_PATTERN.fullmatch(tenant):
                raise ValueError(f"AGENTCHORD_TENANT_LIMITS: {tenant!r} is not a tenant name ({TENANT_RULE})")
        return value

    @property
    def tokens(self) -> tuple[ApiToken, ...]:
        """The API tokens with their names and scopes."""
        return tuple(parse_token(secret) for secret in self.api_tokens)

    def __hash__(self) -> int:
        # Settings key per-process caches (registry, model backend, control apps); the price
        # table is a dict, so hash the JSON form rather than the fields.
        return hash(self.model_dump_json())

    @model_validator(mode="after")
    def _time_limits_below_visibility_timeout(self) -> Settings:
        check_time_limit(self.step_time_limit_s, self, "AGENTCHORD_STEP_TIME_LIMIT_S")
        return self

    def default_retry(self) -> dict[str, Any]:
        return {
            "max_attempts": self.retry_max_attempts,
            "backoff_s": self.retry_backoff_s,
            "backoff_max_s": self.retry_backoff_max_s,
            "jitter": 0.2,
        }

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


def env_example() -> str:
    """Every setting as ``AGENTCHORD_NAME=default`` with its description: deploy/.env.example."""
    lines = ["# Every agentchord setting, with its default. Copy to deploy/.env and edit.", ""]
    for name, field in Settings.model_fields.items():
        default: Any = field.get_default(call_default_factory=True)
        if isinstance(default, tuple):
            default = ",".join(str(item) for item in default)
        elif isinstance(default, dict):
            default = json.dumps(default)
        lines.append(f"# {field.description}")
        lines.append(f"AGENTCHORD_{name.upper()}={'' if default is None else default}")
    lines += ["", "# Compose only (deploy/docker-compose.yml): the Redis password, required. Set a long random one.",
              "REDIS_PASSWORD="]  # fmt: skip
    return "\n".join(lines) + "\n"


# A step may run this close to the visibility timeout, no closer: past it the broker would hand
# the unacked message to a second worker while the first still runs it.
VISIBILITY_SAFETY = 0.8


def check_time_limit(time_limit_s: float, settings: Settings, where: str) -> None:
    """Refuse a time limit that is not safely below the Redis broker's visibility timeout."""
    ceiling = settings.broker_visibility_timeout_s * VISIBILITY_SAFETY
    if time_limit_s > ceiling:
        from proj.errors import ConfigurationError

        raise ConfigurationError(
            f"{where} is {time_limit_s:g}s, not safely below the broker visibility timeout "
            f"({settings.broker_visibility_timeout_s}s; the limit is {ceiling:g}s): raise "
            "AGENTCHORD_BROKER_VISIBILITY_TIMEOUT_S or lower the time limit"
        )
