"""Fixtures: a private redis-server and real `celery -A proj worker` subprocesses."""

from __future__ import annotations

import base64
import gc
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from playwright.sync_api import Browser, sync_playwright
from pydantic import SecretStr

import agents
from coordinator.interfaces.stack import ApiProcess, WorkerProcess
from proj.celery import configure
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
from proj.rabbitmq_vhost import private_vhost
from proj.redis_server import RedisServer, free_port
from proj.settings import Settings
from tests.fake_openai import API_KEY as FAKE_API_KEY
from tests.fake_openai import FakeOpenAI
from tests.receiver import OtlpReceiver, Receiver

T = TypeVar("T")

# Test-only credentials (two webhook secrets: a rotation in progress).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"agentchord-test-secret-0123456789").decode()
OLD_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"agentchord-old-secret-9876543210").decode()
API_TOKEN = "test-token-5b1c0e"

TEST_AGENT_MODULE = "tests.sample_agents"
LOG_DIR = Path(__file__).resolve().parent.parent / ".agentchord" / "test-logs"


def wait_for(predicate: Callable[[], T], timeout_s: float = 30.0, interval_s: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True).start()
    yield server
    # Celery's AsyncResult.__del__ unsubscribes from the result backend: let the tests' result
    # objects go while Redis is still up.
    gc.collect()
    server.close()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """A local HTTP endpoint that records outbound notifications."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """A local OTLP endpoint: the test stack exports its traces here."""
    server = OtlpReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """A local server speaking the OpenAI chat-completions API (no test calls the internet)."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str | None]:
    """None: task messages travel in the test Redis. With AGENTCHORD_TEST_BROKER=rabbitmq (`make
    test-rabbitmq`), through a private virtual host on the machine's RabbitMQ instead."""
    broker = os.environ.get("AGENTCHORD_TEST_BROKER", "redis")
    if broker == "redis":
        yield None
        return
    if broker != "rabbitmq":
        raise RuntimeError(f"AGENTCHORD_TEST_BROKER={broker!r}: use redis or rabbitmq")
    with private_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def settings(
    redis_server: RedisServer,
    receiver: Receiver,
    otlp: OtlpReceiver,
    fake_openai: FakeOpenAI,
    broker_url: str | None,
) -> Settings:
    api_port = free_port()
    value = Settings(
        redis_url=redis_server.url,
        broker_url=broker_url,
        key_prefix="agentchord-test",
        agent_modules=(TEST_AGENT_MODULE,),
        step_lease_s=2,
        retry_backoff_s=0.1,
        watchdog_stall_s=0,  # tests drive the watchdog themselves
        api_port=api_port,
        public_url=f"http://127.0.0.1:{api_port}",
        webhook_secrets=(SecretStr(WEBHOOK_SECRET), SecretStr(OLD_WEBHOOK_SECRET)),
        api_tokens=(SecretStr(API_TOKEN),),
        # The tests send many bad credentials from one address on purpose; one test lowers it.
        auth_failures_per_minute=100_000,
        approval_webhook_urls=(receiver.url,),
        notify_backoff_s=0.1,
        notify_max_attempts=3,
        otel_endpoint=otlp.url,
        otel_batch_delay_ms=200,
        # One role talks to the fake OpenAI-compatible server; the rest stay offline.
        role_backends={"reviewer_llm": "openai", "router_llm": "openai"},
        llm_base_url=fake_openai.url,
        llm_api_key=SecretStr(FAKE_API_KEY),
        llm_model="fake-model",
        llm_timeout_s=1.0,
        # The offline model is priced (per million prompt, completion, cached tokens), so costs are
        # computed and stored by the workers when steps finish.
        model_prices={"offline": (1.0, 4.0, 0.25)},
        # Event streams close after 2 s (clients reconnect with Last-Event-ID): the fuzzer and the
        # browser never hold one open for long.
        sse_max_s=2.0,
        stream_tokens=True,  # models stream their answers to the run's progress stream
    )
    configure(value)
    agents.load_agent_modules(value.agent_modules)
    return value


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    """A client on the test Redis; the registry's keys are removed after each test."""
    connection = redis.Redis.from_url(settings.resolved_redis_url, decode_responses=True)
    yield connection
    for key in connection.scan_iter(f"{settings.key_prefix}:*", count=500):
        connection.delete(key)
    connection.close()


def start_worker(
    queues: list[str], name: str, settings: Settings, concurrency: int = 2, extra_args: list[str] | None = None
) -> WorkerProcess:
    worker = WorkerProcess(
        queues, name, settings, concurrency=concurrency, log_path=LOG_DIR / f"{name}.log", extra_args=extra_args
    )
    try:
        return worker.start().wait_ready()
    except BaseException:
        worker.stop()  # never leave a half-started worker behind
        raise


@pytest.fixture(scope="session")
def worker(settings: Settings) -> Iterator[WorkerProcess]:
    """One worker on every role queue and the coordinator queue, two processes."""
    process = start_worker([*agents.known_roles(), COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE], "all", settings)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[ApiProcess]:
    """`agentchord api` on the test Redis, as a subprocess."""
    process = ApiProcess(settings, port=settings.api_port).start().wait_ready()
    yield process
    process.stop()


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is missing: `make browser` installs Debian's chromium package (apt-get install chromium)")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, driven by Playwright through its executable path (nothing downloaded)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()
