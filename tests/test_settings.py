"""Settings come from AGENTCHORD_* variables, read once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proj.celery import celery_config
from proj.errors import ConfigurationError
from proj.settings import Settings


def test_settings_read_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTCHORD_REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("AGENTCHORD_AGENT_MODULES", "mypkg.agents, other.roles")
    monkeypatch.setenv("AGENTCHORD_FINISHED_RUN_TTL_S", "60")
    settings = Settings()
    assert settings.redis_url == "redis://example:6380/2"
    assert settings.agent_modules == ("mypkg.agents", "other.roles")
    assert settings.finished_run_ttl_s == 60


def test_missing_redis_url_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigurationError, match="set AGENTCHORD_REDIS_URL"):
        _ = Settings(redis_url=None).resolved_redis_url


def test_celery_config_is_json_only_with_late_acks_and_user_modules() -> None:
    config = celery_config(Settings(redis_url="redis://h:1/0", agent_modules=("mypkg.agents",)))
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json"
    assert config["result_accept_content"] == ["json"]
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["worker_send_task_events"] and config["task_send_sent_event"]
    assert "mypkg.agents" in config["imports"]
    assert config["task_default_queue"] == "coordinator"


def test_every_entry_point_finds_the_stack_of_the_directory_it_runs_in(tmp_path: Path) -> None:
    (tmp_path / ".agentchord").mkdir()
    (tmp_path / ".agentchord" / "stack.env").write_text("AGENTCHORD_REDIS_URL=redis://127.0.0.1:6391/0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCHORD_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    probe = (
        "from proj.celery import app, current_settings; "
        "print(current_settings().resolved_redis_url, app.conf.broker_url)"
    )
    seen = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert seen.stdout.split() == ["redis://127.0.0.1:6391/0"] * 2, seen.stderr
    # The environment still wins over the file.
    env["AGENTCHORD_REDIS_URL"] = "redis://127.0.0.1:6392/0"
    seen = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert seen.stdout.split() == ["redis://127.0.0.1:6392/0"] * 2, seen.stderr
