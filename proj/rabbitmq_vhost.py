"""A private RabbitMQ virtual host on the machine's RabbitMQ, for the tests' and benchmarks' runs
on that broker (as :mod:`proj.redis_server` is their private Redis).

They do not start their own RabbitMQ node (it takes seconds and shares epmd with the machine's):
they create a virtual host of their own on the running one (`make rabbitmq` installs Debian's
rabbitmq-server and starts it when missing) and delete it afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from proj.errors import ConfigurationError

HOW = "run `make rabbitmq` (installs Debian's rabbitmq-server and starts it)"


def _ctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ConfigurationError(f"RabbitMQ is needed here and rabbitmqctl is missing: {HOW}") from None
    if done.returncode != 0:
        raise ConfigurationError(f"rabbitmqctl {' '.join(args)} failed ({done.stderr.strip()[-300:]}): {HOW}")
    return done.stdout


@contextmanager
def private_vhost(host: str = "127.0.0.1", port: int = 5672) -> Iterator[str]:
    """An ``amqp://`` URL of a fresh virtual host (guest has every permission there)."""
    vhost = f"agentchord-test-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", vhost)
    try:
        _ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{host}:{port}/{vhost}"
    finally:
        _ctl("delete_vhost", vhost)
