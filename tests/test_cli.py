"""The `agentchord` console script against the test stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from coordinator import Step, Workflow, get_run, start
from coordinator.interfaces.stack import settings_env
from proj.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")


CLI = [sys.executable, "-c", "from coordinator.interfaces.cli import main; main()"]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**settings_env(settings), "COLUMNS": "200", **extra}


def agentchord(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(settings, **env), capture_output=True, text=True, timeout=120)


def test_run_wait_status_and_list(settings: Settings, client: redis.Redis) -> None:
    started = agentchord(
        settings, "run", "triage", "--input", json.dumps({"text": "crash on save, error 500"}), "--wait"
    )
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.splitlines()[0].strip()
    results = json.loads(started.stdout.split("\n", 1)[1])
    assert results["route"]["route"] == "bug"
    assert results["check"]["verdict"] == "PASS"

    status = agentchord(settings, "status", run_id, "--json")
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["status"]["state"] == "succeeded"
    assert [s["step"] for s in body["timings"]["steps"]] == ["route", "check"]

    listed = agentchord(settings, "list")
    assert run_id in listed.stdout


def test_bad_input_is_one_clear_line_and_exit_code_2(settings: Settings, client: redis.Redis) -> None:
    unknown = agentchord(settings, "run", "no_such_workflow")
    assert unknown.returncode == 2
    assert "unknown workflow 'no_such_workflow'" in unknown.stdout
    missing = agentchord(settings, "status", "nope")
    assert missing.returncode == 2 and "no run 'nope'" in missing.stdout
    bad_json = agentchord(settings, "run", "triage", "--input", "{not json")
    assert bad_json.returncode == 2 and "--input is not valid JSON" in bad_json.stderr


def test_a_run_that_needs_an_operator_shows_the_error_and_the_next_commands(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    spec = tmp_path / "breaks.yaml"
    spec.write_text(
        "name: breaks\nsteps:\n  - {name: explode, agent: boom}\n  - {name: after, agent: echo, after: [explode]}\n"
    )
    waited = agentchord(settings, "run", str(spec), "--wait", "--timeout", "60")
    assert waited.returncode == 2, waited.stdout + waited.stderr
    run_id = waited.stdout.split()[0]
    assert "ValueError: boom in explode" in waited.stdout
    assert f"agentchord retry {run_id} explode" in waited.stdout
    assert f"agentchord skip {run_id} explode --output" in waited.stdout
    shown = agentchord(settings, "status", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "step explode failed: ValueError: boom in explode" in shown.stdout
    assert f"agentchord abort {run_id}" in shown.stdout


def test_durations_read_at_a_glance() -> None:
    from coordinator.interfaces.cli import duration

    assert [duration(s) for s in (-3, 45, 720, 86_397, 273_600)] == ["0 s", "45 s", "12 min", "23 h 59 min", "3 d 4 h"]


def test_watch_prints_events_as_they_happen_until_the_run_ends(settings: Settings, client: redis.Redis) -> None:
    steps = [Step(name="a", agent="echo", params={"sleep_s": 0.5}), Step(name="b", agent="echo", after=["a"])]
    run = start(Workflow(name="watched", steps=steps), input={})
    watched = agentchord(settings, "watch", run.id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    assert "run_started" in lines[0] and "step_finished step=b" in watched.stdout
    assert lines[-1] == f"run {run.id}: succeeded"
    failing = start(Workflow(name="watched_fail", steps=[Step(name="x", agent="boom")]), input={})
    assert agentchord(settings, "watch", failing.id).returncode == 1


def test_python_follows_a_runs_events_until_it_ends(client: redis.Redis) -> None:
    steps = [Step(name="a", agent="echo", params={"sleep_s": 0.3}), Step(name="b", agent="echo", after=["a"])]
    run = start(Workflow(name="followed_py", steps=steps), input={})
    seen = []
    for event in run.events(follow=True, timeout_s=60):
        seen.append(event.type)
        if event.type == "run_started":
            assert run.status().state == "running"  # yielded while the run goes on
    assert seen[0] == "run_started" and seen[-1] == "run_finished" and seen.count("step_finished") == 2
    assert [e.type for e in run.events()] == seen  # the same log, nothing twice


def test_errors_are_one_line_with_an_exit_code_per_cause(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    unreachable = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    down = agentchord(unreachable, "list")
    assert down.returncode == 4 and "Traceback" not in down.stdout + down.stderr
    assert "cannot reach Redis at redis://127.0.0.1:1" in down.stdout and "AGENTCHORD_REDIS_URL" in down.stdout
    assert "Traceback" in agentchord(unreachable, "list", "--debug").stderr  # the details, when asked
    slow = tmp_path / "slow.yaml"
    slow.write_text("name: slow_cli\nsteps:\n  - {name: a, agent: echo, params: {sleep_s: 2}}\n")
    timed_out = agentchord(settings, "run", str(slow), "--wait", "--timeout", "0.2")
    assert timed_out.returncode == 3 and "did not finish within" in timed_out.stdout
    assert agentchord(settings, "status", "no-such-run").returncode == 2
    # `list` shows when runs started in local time, and how long ago, not epoch seconds.
    run_id = timed_out.stdout.split()[0]
    row = next(line for line in agentchord(settings, "list").stdout.splitlines() if run_id in line)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", row) and " ago" in row
    assert str(int(float(get_run(run_id).status().created_at))) not in row


def test_run_wait_says_which_queue_has_no_worker_and_how_to_start_one(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    # A role the CLI knows (its module is on the CLI's path) that no worker of the test stack serves.
    (tmp_path / "cli_unstaffed_agents.py").write_text(
        "from agents import StepContext, agent\n\n\n@agent('cli_unstaffed')\n"
        "def unstaffed(ctx: StepContext) -> dict[str, str]:\n    return {}\n"
    )
    spec = tmp_path / "unstaffed.yaml"
    spec.write_text("name: unstaffed_cli\nsteps:\n  - {name: lonely, agent: cli_unstaffed}\n")
    modules = ",".join([*settings.agent_modules, "cli_unstaffed_agents"])
    pythonpath = os.pathsep.join([str(tmp_path), settings_env(settings)["PYTHONPATH"]])
    waited = agentchord(
        settings,
        *("run", str(spec), "--wait", "--timeout", "2.5"),
        AGENTCHORD_AGENT_MODULES=modules,
        PYTHONPATH=pythonpath,
    )
    try:
        assert waited.returncode == 3, waited.stdout + waited.stderr  # timed out: the run goes on
        assert "did not finish within 2.5s" in waited.stdout
        said = [line for line in waited.stderr.splitlines() if "waiting for a worker" in line]
        # Polled about once a second for 2.5 s, said once: a new line only when it changes.
        assert len(said) == 1, waited.stderr
        assert re.fullmatch(
            r"step lonely is waiting for a worker on queue cli_unstaffed since \d\d:\d\d:\d\d: no live worker "
            r"serves it \(start one: celery -A proj worker -Q cli_unstaffed -n cli_unstaffed@%h\)",
            said[0],
        ), said
    finally:
        if waited.stdout.split():
            get_run(waited.stdout.split()[0]).cancel()
        client.delete("cli_unstaffed")  # the broker's list for that queue


def test_run_wait_at_an_approval_gate_names_the_approval_and_how_to_approve_it(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    spec = tmp_path / "gated.yaml"
    spec.write_text(
        "name: gated_cli\nsteps:\n  - {name: a, agent: echo}\n"
        "  - {name: gate, after: [a], approval: {prompt: 'ship it?'}}\n"
        "  - {name: b, agent: echo, after: [gate]}\n"
    )
    with subprocess.Popen(
        [*CLI, "run", str(spec), "--wait", "--timeout", "60"],
        env=cli_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as waiting:
        assert waiting.stdout is not None and waiting.stderr is not None
        run_id = waiting.stdout.readline().strip()
        # The line comes while the command still waits (it would end only at the 60 s timeout).
        said = next((line for line in waiting.stderr if "waiting for approval" in line), "")
        assert said.strip() == (
            f"waiting for approval {run_id}.gate at step 'gate' "
            f"(approve: agentchord approve {run_id}.gate; or with --reject)"
        ), said
        assert waiting.poll() is None
        approved = agentchord(settings, "approve", f"{run_id}.gate")  # the command it printed
        assert approved.returncode == 0, approved.stdout + approved.stderr
        out, err = waiting.stdout.read(), waiting.stderr.read()  # both end when it exits
        assert waiting.wait(timeout=60) == 0, out + err
    assert set(json.loads(out)) == {"a", "gate", "b"}
    # Said once (above), not again at a later poll before the approval landed (how many polls
    # that spans depends on timing: the no-worker test above pins the once-only rule down).
    assert "waiting for approval" not in err, err
