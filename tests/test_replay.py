"""Bulk replay and dead letters on real workers: runs stuck on the same broken step are listed
by error, a dry run changes nothing, and after the fix one replay recovers them all: retries for
runs waiting in needs_attention, reruns (reusing what succeeded) for runs that ended failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import Run, Step, Workflow, start
from coordinator.interfaces.replay import dead_letters, parse_window, plan_replay, replay
from proj.errors import InvalidStartOptionError
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import wait_for
from tests.test_cli import agentchord

pytestmark = pytest.mark.usefixtures("worker", "client")


def broken(name: str, fix: Path) -> Workflow:
    return Workflow(
        name=name,
        steps=[
            Step(name="prep", agent="echo"),
            Step(name="work", agent="broken_until_fixed", after=["prep"], params={"path": str(fix)}),
        ],
    )


def stuck(workflow: Workflow, count: int) -> list[Run]:
    runs = [start(workflow, input={"i": i}) for i in range(count)]
    for run in runs:
        wait_for(lambda run=run: run.status().state == "needs_attention", timeout_s=60)
    return runs


def test_a_replay_recovers_every_run_stuck_on_a_fixed_step(tmp_path: Path, settings: Settings) -> None:
    registry = registry_for(settings)
    fix = tmp_path / "fixed"
    waiting = stuck(broken("replay_me", fix), 3)
    ended = stuck(broken("replay_me", fix), 1)
    ended[0].abort("given up for now")
    other = stuck(broken("not_me", fix), 1)

    groups = [g for g in dead_letters(registry, since_s=600) if str(fix) in g.error]
    assert len(groups) == 1 and groups[0].count == 5
    assert {s.run_id for s in groups[0].steps} == {r.id for r in [*waiting, *ended, *other]}
    shown = agentchord(settings, "dead-letters", "--since", "10m")
    assert shown.returncode == 0 and "work is broken until" in shown.stdout, shown.stdout

    # A dry run plans and changes nothing.
    planned = replay(registry, "needs_attention", "replay_me", since_s=600)
    assert {a.run_id for a in planned} == {r.id for r in waiting}
    assert all(a.action == "retry" and a.steps == ["work"] and a.outcome == "planned" for a in planned)
    dry = agentchord(settings, "replay", "--state", "needs_attention", "--workflow", "replay_me", "--since", "10m")
    assert dry.returncode == 0 and "dry run: 3 run(s)" in dry.stdout, dry.stdout
    assert all(run.status().state == "needs_attention" for run in waiting)
    assert plan_replay(registry, "needs_attention", "replay_me", since_s=1e-6) == []  # outside the window

    fix.write_text("fixed")
    done = replay(registry, "needs_attention", "replay_me", since_s=600, execute=True, rate_per_s=50)
    assert [a.outcome for a in done] == ["done"] * 3
    for run in waiting:
        run.wait(timeout=60)
        assert run.status().steps["work"].state == "succeeded"

    rerun_cli = agentchord(settings, "replay", "--state", "failed", "--workflow", "replay_me", "--yes")
    assert rerun_cli.returncode == 0 and "replayed 1 of 1" in rerun_cli.stdout, rerun_cli.stdout
    again_id = rerun_cli.stdout.split(" -> ", 1)[1].split()[0]
    again = Run(again_id, registry)
    again.wait(timeout=60)
    assert again.status().rerun_of == ended[0].id
    assert again.status().steps["prep"].reused_from == ended[0].id  # what succeeded is reused
    assert other[0].status().state == "needs_attention"  # another workflow: untouched
    other[0].abort("test over")


def test_bad_replays_are_refused(settings: Settings) -> None:
    registry = registry_for(settings)
    with pytest.raises(InvalidStartOptionError, match="state"):
        replay(registry, "succeeded")
    with pytest.raises(InvalidStartOptionError, match="rate"):
        replay(registry, "failed", rate_per_s=0)
    with pytest.raises(InvalidStartOptionError, match="since"):
        parse_window("soon")
    assert parse_window("90s") == 90 and parse_window("1h") == 3600 and parse_window("2d") == 172800
    refused = agentchord(settings, "replay", "--state", "running")
    assert refused.returncode != 0 and "replay takes runs in" in refused.stdout + refused.stderr
