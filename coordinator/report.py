"""Rendering runs for people: the timing table the demo and ``agentchord status`` print."""

from __future__ import annotations

from rich.table import Table

from coordinator.runner import RunStatus
from coordinator.timing import RunTimings


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def timing_table(status: RunStatus, timings: RunTimings) -> Table:
    """Per step: when it started, handoff, queue wait, agent body, step overhead, tokens."""
    table = Table(title=f"run {status.id} ({status.workflow}): {status.state}")
    for column in (
        "step",
        "agent",
        "state",
        "start ms",
        "handoff ms",
        "queue ms",
        "body ms",
        "parked ms",
        "step ovh ms",
        "tokens in/out",
        "runs",
    ):
        table.add_column(column, justify="left" if column in ("step", "agent", "state") else "right")
    for step in timings.steps:
        table.add_row(
            step.step,
            step.agent,
            step.state,
            _ms(step.start_offset_s),
            _ms(step.handoff_s),
            _ms(step.queue_wait_s),
            _ms(step.body_s),
            _ms(step.parked_s),
            _ms(step.step_overhead_s),
            f"{step.prompt_tokens}/{step.completion_tokens}",
            str(step.body_runs),
        )
    ratio = "-" if timings.tax_ratio is None else f"{timings.tax_ratio:.1%}"
    table.caption = (
        f"wall {_ms(timings.wall_s)} ms | parked {_ms(timings.parked_s)} ms | critical-path agent time "
        f"{_ms(timings.critical_path_body_s)} ms | coordination overhead {_ms(timings.overhead_s)} ms "
        f"({ratio} of wall time not parked)"
    )
    return table
