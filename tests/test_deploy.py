"""deploy/ stays consistent with the code (Docker is not available to run it here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from agents.base import _ROLES
from proj.queues import COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE
from proj.settings import Settings, env_example

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def built_in_roles() -> set[str]:
    return {name for name, role in _ROLES.items() if role.function.__module__.startswith("agents.")}


def test_every_role_and_the_coordinator_have_a_worker_service_on_their_queue() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    queues_served = set()
    for service in compose["services"].values():
        command = service.get("command", [])
        if command[:4] == ["celery", "-A", "proj", "worker"]:
            queues_served.update(command[command.index("-Q") + 1].split(","))
    assert queues_served == built_in_roles() | {COORDINATOR_QUEUE, NOTIFICATIONS_QUEUE}


def test_compose_runs_the_api_and_a_beat_for_deadlines() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert services["api"]["command"][:2] == ["agentchord", "api"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "proj", "beat"]


def test_redis_service_persists_with_aof_and_never_evicts() -> None:
    command = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    assert (DEPLOY / ".env.example").read_text() == env_example(), "run: agentchord env-example > deploy/.env.example"
    listed = {
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert listed == {f"AGENTCHORD_{name.upper()}" for name in Settings.model_fields} | {"REDIS_PASSWORD"}


def test_compose_redis_needs_a_password_and_every_service_uses_it() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    required = "${REDIS_PASSWORD:?set REDIS_PASSWORD in deploy/.env}"
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == required
    for name, service in compose["services"].items():
        if name != "redis":
            assert service["environment"]["AGENTCHORD_REDIS_URL"] == f"redis://:{required}@redis:6379/0", name


def test_flower_is_published_on_this_host_only() -> None:
    flower = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_the_env_example_loads_as_compose_would_load_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose passes every line as an environment variable, empty values included.
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.step_soft_time_limit_s is None and settings.llm_requests_per_minute is None


def test_the_wheel_the_image_installs_holds_every_module_and_data_file(tmp_path: Path) -> None:
    # The image installs the project from its wheel (deploy/Dockerfile), not in editable mode:
    # build that wheel from what the Dockerfile copies (a fresh copy: setuptools reuses a build/
    # folder it finds) and check it against the source tree, so no package or Lua/YAML file is
    # missing where the containers run. (No container engine runs on these machines.)
    root = DEPLOY.parent
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    for package in ("proj", "agents", "coordinator"):
        shutil.copytree(root / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("agentchord-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        path.relative_to(root).as_posix()
        for package in ("proj", "agents", "coordinator")
        for path in (root / package).rglob("*")
        if path.suffix in {".py", ".lua", ".yaml", ".js", ".css"} and "__pycache__" not in path.parts
    }
    assert expected - packed == set()
    assert any(name.endswith("entry_points.txt") for name in packed)


def test_the_image_needs_no_compiler_at_run_time() -> None:
    stages = [line.split() for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")]
    assert [stage[1] for stage in stages] == ["python:3.12", "python:3.12-slim"]  # builder has gcc, runtime not
    runtime = (DEPLOY / "Dockerfile").read_text().split("FROM python:3.12-slim", 1)[1]
    assert "--no-index --find-links /wheels" in runtime  # installs prebuilt wheels only
