"""The local stack: a private Redis (when none is configured), Celery workers and Flower, as
real subprocesses started with the plain Celery CLI. Used by ``agentchord up``/``demo``, the
benchmarks and the system tests.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from pydantic import SecretStr

from proj.celery import celery_config, configure
from proj.errors import ConfigurationError
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
from proj.redis_server import RedisServer, free_port
from proj.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read the same settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        key = f"AGENTCHORD_{name.upper()}"
        if value is None:
            env.pop(key, None)
        elif isinstance(value, dict):
            env[key] = json.dumps(value)
        elif isinstance(value, tuple | list):
            env[key] = ",".join(v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value)
        else:
            env[key] = str(value)
    # Workers must import the project from the working tree like the caller does.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH", "")]))
    return env


def with_local_secrets(settings: Settings) -> Settings:
    """``settings`` with a fresh webhook secret and API token when neither is configured, so a
    local stack's API is never open. They are not printed: `up` writes them to a 0600 file."""
    if settings.webhook_secrets or settings.api_tokens:
        return settings
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return settings.model_copy(
        update={"webhook_secrets": (SecretStr(secret),), "api_tokens": (SecretStr(secrets.token_urlsafe(32)),)}
    )


_control_apps: dict[Settings, Celery] = {}


def control_app(settings: Settings) -> Celery:
    """A Celery app on ``settings``' broker, for pings and inspection of workers there."""
    if settings not in _control_apps:
        _control_apps[settings] = Celery("agentchord-control", config_source=celery_config(settings))
    return _control_apps[settings]


class WorkerProcess:
    """``celery -A proj worker -Q <queues>`` as a subprocess in its own process group."""

    def __init__(
        self,
        queues: list[str],
        name: str,
        settings: Settings,
        concurrency: int = 1,
        pool: str = "prefork",
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.queues = queues
        self.hostname = f"{name}@{socket.gethostname()}"
        self.settings = settings
        self.concurrency = concurrency
        self.pool = pool
        self.log_path = log_path
        self._log: IO[str] | None = None
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "proj", "worker",
            *(["-Q", ",".join(self.queues)] if self.queues else []), "-n", self.hostname,
            "-c", str(self.concurrency), "-P", self.pool,
            "--loglevel", "INFO", "--without-mingle", "--without-gossip",
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> WorkerProcess:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.command(),
            env=settings_env(self.settings),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> WorkerProcess:
        """Return once the worker answers a control ping (it consumes its queues by then)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ConfigurationError(f"worker {self.hostname} exited during start-up (code {code})")
            try:
                if control_app(self.settings).control.ping(destination=[self.hostname], timeout=0.5):
                    return self
            except (redis.ConnectionError, OSError, OperationalError):
                # A pooled connection to a Redis that restarted fails once; the next one reconnects.
                time.sleep(0.1)
        raise ConfigurationError(f"worker {self.hostname} did not answer a ping within {timeout_s}s")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def child_pids(self) -> list[int]:
        """PIDs of the pool's child processes (prefork), read from /proc."""
        if self.pid is None:
            return []
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def stop(self, timeout_s: float = 15.0) -> None:
        """Warm shutdown (SIGTERM: finish running tasks), then SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children, as a machine crash would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._close_log()


class FlowerProcess:
    """``celery -A proj flower`` on a free local port."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FlowerProcess:
        command = ["celery", "-A", "proj", "flower", f"--port={self.port}", "--address=127.0.0.1"]
        # Flower's HTTP API needs auth unless told otherwise; this one listens on loopback only.
        self.process = _spawn(command, self.settings, {"FLOWER_UNAUTHENTICATED_API": "true"})
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> FlowerProcess:
        _wait_http(f"{self.url}/healthcheck", self.process, "flower", timeout_s)
        return self

    def stop(self) -> None:
        _terminate(self.process)


class ApiProcess:
    """``agentchord api`` (uvicorn) as a subprocess on a free local port."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.port = port or free_port()
        self.settings = settings.model_copy(
            update={"api_port": self.port, "public_url": f"http://127.0.0.1:{self.port}"}
        )
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiProcess:
        self.process = _spawn(["coordinator.interfaces.cli", "api"], self.settings)
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> ApiProcess:
        _wait_http(f"{self.url}/healthz", self.process, "the API", timeout_s)
        return self

    def stop(self) -> None:
        _terminate(self.process)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def _spawn(
    module_args: list[str], settings: Settings, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -m <module_args>`` in its own session (a terminal's Ctrl-C reaches only `up`)."""
    return subprocess.Popen(
        [sys.executable, "-m", *module_args],
        env={**settings_env(settings), **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )


def _wait_http(url: str, process: subprocess.Popen[str] | None, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is None or process.poll() is not None:
            raise ConfigurationError(f"{what} exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise ConfigurationError(f"{what} did not answer on {url} within {timeout_s}s")


def _terminate(process: subprocess.Popen[str] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LocalStack:
    """Redis (private unless configured), one worker per role plus a coordinator worker, Flower.

    Example:
        >>> with LocalStack(Settings(), roles=["reviewer", "merger"]) as stack:  # doctest: +SKIP
        ...     print(stack.settings.redis_url, stack.flower_url)
    """

    def __init__(
        self,
        settings: Settings,
        roles: list[str],
        *,
        flower: bool = True,
        concurrency: int = 1,
        single_worker: bool = False,
        api: bool = True,
        log_dir: Path | None = None,
    ) -> None:
        self.base_settings = settings
        self.settings = settings
        self.roles = roles
        self.with_flower = flower
        self.concurrency = concurrency
        self.single_worker = single_worker
        self.log_dir = log_dir
        self.redis: RedisServer | None = None
        self.workers: list[WorkerProcess] = []
        self.flower: FlowerProcess | None = None
        self.with_api = api
        self.api: ApiProcess | None = None
        self._beat_dir = tempfile.TemporaryDirectory(prefix="agentchord-beat-")

    @property
    def flower_url(self) -> str | None:
        return self.flower.url if self.flower else None

    @property
    def api_url(self) -> str | None:
        return self.api.url if self.api else None

    def start(self) -> LocalStack:
        try:
            if not self.base_settings.redis_url:
                self.redis = RedisServer(appendonly=True).start()
                self.settings = self.base_settings.model_copy(update={"redis_url": self.redis.url})
            if self.with_api:
                self.settings = with_local_secrets(self.settings)
                self.api = ApiProcess(self.settings)
                # Workers build resume URLs in notifications: they need the API's address.
                self.settings = self.api.settings
            configure(self.settings)
            coordinator = [COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE]
            groups = [[*self.roles, *coordinator]] if self.single_worker else [[r] for r in self.roles] + [coordinator]
            for queues in groups:
                name = "all" if self.single_worker else queues[0]
                # The coordinator worker also runs the beat schedule (approval deadline sweeps).
                beat = ["-B", "-s", str(Path(self._beat_dir.name) / "schedule")] if COORDINATOR_QUEUE in queues else []
                worker = WorkerProcess(
                    queues,
                    name,
                    self.settings,
                    self.concurrency,
                    log_path=self.log_dir / f"{name}.log" if self.log_dir else None,
                    extra_args=beat,
                )
                self.workers.append(worker.start())
            if self.with_flower:
                self.flower = FlowerProcess(self.settings).start()
            if self.api:
                self.api.start()
            for worker in self.workers:
                worker.wait_ready()
            if self.flower:
                self.flower.wait_ready()
            if self.api:
                self.api.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything this stack started, workers first (they finish running tasks)."""
        if self.api:
            self.api.stop()
        if self.flower:
            self.flower.stop()
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()
        if self.redis:
            # Celery's AsyncResult.__del__ talks to the result backend: collect the result
            # objects of sent canvases (they sit in reference cycles) while Redis is still up.
            gc.collect()
            self.redis.close()
        self._beat_dir.cleanup()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
