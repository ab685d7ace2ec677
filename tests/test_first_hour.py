"""The README's first hour, walked as a new user would: a clean directory with an agent package
of their own, `agentchord up`, the printed addresses and credentials, a run started from Python,
from the CLI and over HTTP, each approved, the report, and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import wait_for
from tests.test_local_stack import launch_up

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# The user's workflow: their own role, then a human gate, then their role again.
MY_FLOW = {
    "name": "my_flow",
    "steps": [
        {"name": "summarize", "agent": "summarizer"},
        {"name": "approve", "after": ["summarize"], "approval": {"prompt": "Publish the summary?"}},
        {"name": "publish", "agent": "summarizer", "after": ["approve"]},
    ],
}


def readme_block(after_heading: str, language: str) -> str:
    """The first ``language`` code block after ``after_heading``, verbatim."""
    section = README.split(after_heading, 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found, f"no {language} block after {after_heading!r} in the README"
    return found.group(1)


def test_the_first_hour_of_a_new_user_with_their_own_agents(tmp_path: Path) -> None:
    # The README's own agent role, verbatim, as the user's package.
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "agents.py").write_text(readme_block("## Your own agent role", "python"))
    (tmp_path / "my_flow.yaml").write_text(yaml.safe_dump(MY_FLOW))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCHORD_")}
    env["AGENTCHORD_AGENT_MODULES"] = "mypkg.agents"  # the README's `export`

    def shell(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, input=stdin)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done.stdout

    agentchord = [str(Path(sys.executable).with_name("agentchord"))]
    up, printed = launch_up(agentchord, tmp_path, env)
    try:
        # Where things are: the API's address on screen, the credentials in the file it names.
        api_line = next(line for line in printed if line.startswith("API"))
        api_url = api_line.split()[1]
        assert ".agentchord/stack.env" in api_line
        written = dict(line.split("=", 1) for line in (tmp_path / ".agentchord" / "stack.env").read_text().splitlines())
        token = written["AGENTCHORD_API_TOKENS"]
        auth = {"authorization": f"Bearer {token}"}

        # 1. From Python, in that directory, with nothing configured: it finds up's Redis.
        python_run = shell(
            sys.executable,
            "-c",
            "from coordinator import start, load_workflow\n"
            "run = start(load_workflow('my_flow.yaml'), input={'text': 'from python'})\n"
            "print(run.id)",
        ).strip()
        # 2. From the CLI, with the user's file.
        cli_run = shell(*agentchord, "run", "my_flow.yaml", "--input", '{"text": "from the shell"}').strip()
        # 3. Over HTTP, with the generated token.
        started = httpx.post(
            f"{api_url}/workflows", json={"spec": MY_FLOW, "input": {"text": "over http"}}, headers=auth, timeout=30
        )
        assert started.status_code == 202, started.text
        http_run = started.json()["run_id"]

        runs = [python_run, cli_run, http_run]

        def pending() -> list[dict[str, Any]]:
            listed = httpx.get(f"{api_url}/approvals", headers=auth, timeout=10).json()
            return [a for a in listed if a["run_id"] in runs]

        gates = wait_for(lambda: len(pending()) == 3 and pending(), timeout_s=90)
        # The user's role ran before the gate, and the gate shows its output.
        for gate in gates:
            summary = httpx.get(f"{api_url}/workflows/{gate['run_id']}", headers=auth, timeout=10).json()
            assert summary["status"]["steps"]["summarize"]["state"] == "succeeded"
        # Approve one from the CLI, one over HTTP, one from Python.
        shell(*agentchord, "approve", python_run)
        http_gate = next(g for g in gates if g["run_id"] == http_run)
        decided = httpx.post(http_gate["resume_url"], json={"decision": "approve"}, headers=auth, timeout=30)
        assert decided.status_code == 200, decided.text
        shell(sys.executable, "-c", f"from coordinator import get_run; get_run({cli_run!r}).approve()")

        def states() -> set[str]:
            return {
                httpx.get(f"{api_url}/workflows/{run}", headers=auth, timeout=10).json()["status"]["state"]
                for run in runs
            }

        wait_for(lambda: states() == {"succeeded"}, timeout_s=90)
        # The report, as a table and as a page that says where it went.
        table = shell(*agentchord, "report", http_run)
        assert "publish" in table and "summarize" in table and "tokens and cost per step" in table
        page = subprocess.run(
            [*agentchord, "report", http_run, "--html", "report.html"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert str(tmp_path / "report.html") in page.stderr and (tmp_path / "report.html").exists()
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 0, out
    assert token not in "".join(printed) + out  # credentials never on screen
    assert not (tmp_path / ".agentchord" / "stack.env").exists()


def test_every_worker_command_in_the_readme_names_its_node() -> None:
    # Without -n every worker is celery@<host>: `inspect` warns of duplicates and Flower shows one.
    commands = [line for line in README.splitlines() if "celery -A proj worker" in line]
    assert commands
    for line in commands:
        assert re.search(r"\s-n\s+\S+@%h", line), line
