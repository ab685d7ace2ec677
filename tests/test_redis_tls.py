"""Redis over TLS with an ACL user that may run only the commands agentchord needs
(proj.connections.REDIS_COMMANDS): the broker, the results and the registry, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

import agents
from coordinator import Approval, Step, Workflow, builtin_workflow, start
from coordinator.engine.watchdog import flag_unserved, sweep_stalled
from coordinator.interfaces.stack import WorkerProcess
from coordinator.observation.metrics import RegistryCollector
from coordinator.observation.roles import role_views
from proj.budget import Budget
from proj.celery import configure
from proj.connections import acl_rule, redis_client
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
from proj.redis_server import RedisServer, free_port
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import LOG_DIR, start_worker

USER, PASSWORD = "agentchord", "tls-acl-password-7d1c"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    """redis-server with TLS only (no plain port) and one user, limited to REDIS_COMMANDS."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    server = RedisServer(
        port=port,
        extra_args=[
            "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file), "--tls-ca-cert-file", str(ca_file),
            "--tls-auth-clients", "no",
            # One word per argument: redis-server quotes an argument with spaces as one token.
            "--user", "default", "off", "--user", USER, *acl_rule(PASSWORD).split(),
        ],
        client_options={"ssl": True, "ssl_ca_certs": str(ca_file), "username": USER, "password": PASSWORD},
    )  # fmt: skip
    server.start()
    yield server, ca_file
    server.close()


@pytest.fixture(scope="module")
def tls(settings: Settings, tls_server: tuple[RedisServer, Path]) -> Iterator[Settings]:
    server, ca_file = tls_server
    tls_settings = settings.model_copy(
        update={"redis_url": f"rediss://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0", "redis_ca_file": str(ca_file)}
    )
    configure(tls_settings)
    try:
        yield tls_settings
    finally:
        configure(settings)


@pytest.fixture(scope="module")
def tls_worker(tls: Settings) -> Iterator[WorkerProcess]:
    process = start_worker([*agents.known_roles(), COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE], "tls", tls)
    yield process
    process.stop()


def test_the_acl_user_cannot_run_anything_else(tls: Settings) -> None:
    client = redis_client(tls)
    assert client.ping()
    for refused in (("FLUSHALL",), ("CONFIG", "SET", "appendonly", "no"), ("KEYS", "*"), ("EVAL", "return 1", "0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*refused)


def test_plain_connections_are_refused(tls: Settings, tls_server: tuple[RedisServer, Path]) -> None:
    server, _ = tls_server
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=server.port, socket_connect_timeout=1, socket_timeout=1).ping()


def test_workflows_run_end_to_end_over_tls_with_the_listed_commands_only(
    tls: Settings, tls_worker: WorkerProcess
) -> None:
    results = start(builtin_workflow("code_review"), input={"code": "def f(): return 1"}).wait(timeout=60)
    assert set(results) == {"review", "tests", "docs", "merge"}
    gated = start(builtin_workflow("code_review_gated"), input={"code": "x = 1"})
    gated.wait_for_approval(timeout=60)
    gated.approve(comment="over TLS")
    assert gated.wait(timeout=60)
    # Admission and budgets (their scripts), the watchdog, the metrics, the roles view.
    limited = tls.model_copy(update={"max_running_per_tenant": 1})
    gate = Workflow(name="tls_gate", steps=[Step(name="gate", approval=Approval())])
    first, second = start(gate, tenant="t", settings=limited), start(gate, tenant="t", settings=limited)
    first.wait_for_approval(timeout=30)
    assert second.status().state == "queued"
    assert first.cancel() and second.cancel()
    capped = start(builtin_workflow("code_review"), input={"code": "y"}, budget=Budget(max_model_calls=1))
    with pytest.raises(Exception, match="budget exceeded"):
        capped.wait(timeout=60)
    registry = registry_for(tls)
    sweep_stalled(registry)
    flag_unserved(registry, agents.known_roles())
    assert role_views(registry, agents.known_roles())
    assert list(RegistryCollector(registry).collect())
    # A command the user may not run is refused with NOPERM wherever it is sent, the worker too.
    assert "NOPERM" not in (LOG_DIR / "tls.log").read_text()
