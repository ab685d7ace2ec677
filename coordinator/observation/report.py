"""Reports of the coordination tax: the per-step table, aggregates over many runs, and a
self-contained HTML page (Gantt timeline + histograms, inline SVG, no external assets)."""

from __future__ import annotations

import html
import statistics
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from rich.table import Table

from coordinator.observation.status import RunStatus
from coordinator.observation.timing import RunTimings
from proj.plan import RunPlan


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def timing_table(status: RunStatus, timings: RunTimings) -> Table:
    """Per step: when it started, handoff, queue wait, body (model inside), parked, step
    overhead, attempts, context bytes, tokens; the run's totals in the caption."""
    table = Table(title=f"run {status.id} ({status.workflow}): {status.state}")
    columns = (
        "step", "agent", "state", "start ms", "handoff ms", "queue ms", "body ms", "model ms",
        "parked ms", "step ovh ms", "tries", "ctx bytes", "tokens in/out", "re-inj",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("step", "agent", "state") else "right")
    for step in timings.steps:
        table.add_row(
            step.step,
            step.agent,
            "reused" if step.reused_from else step.state,
            _ms(step.start_offset_s),
            _ms(step.handoff_s),
            _ms(step.queue_wait_s),
            _ms(step.body_s),
            _ms(step.model_s),
            _ms(step.parked_s),
            _ms(step.step_overhead_s),
            str(step.attempts),
            str(step.context_bytes),
            f"{step.prompt_tokens}/{step.completion_tokens}",
            str(step.reinjected_tokens),
        )
    ratio = "-" if timings.tax_ratio is None else f"{timings.tax_ratio:.1%}"
    table.caption = (
        f"wall {_ms(timings.wall_s)} ms | parked {_ms(timings.parked_s)} ms | critical-path agent time "
        f"{_ms(timings.critical_path_body_s)} ms | coordination overhead {_ms(timings.overhead_s)} ms "
        f"({ratio} of wall time not parked) | tokens {timings.prompt_tokens}/{timings.completion_tokens}, "
        f"cached {timings.cached_tokens}, re-injected {timings.reinjected_tokens} ({broadcast_saving(timings)}) | "
        f"cost ${timings.cost:.6f} | broker messages "
        f"{timings.broker_messages}"
    )
    return table


def token_table(timings: RunTimings) -> Table:
    """Per step: prompt tokens (cached among them), completion tokens, re-injected tokens, what a
    broadcast of every earlier output would have re-injected, and the cost stored when it finished."""
    table = Table(title="tokens and cost per step")
    columns = ("step", "prompt", "cached", "completion", "re-injected", "broadcast would", "cost $")
    for column in columns:
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in timings.steps:
        table.add_row(
            step.step,
            str(step.prompt_tokens),
            str(step.cached_tokens),
            str(step.completion_tokens),
            str(step.reinjected_tokens),
            str(step.broadcast_reinjected_tokens),
            f"{step.cost:.6f}",
        )
    table.caption = f"re-injected {timings.reinjected_tokens}: {broadcast_saving(timings)}"
    return table


def broadcast_saving(timings: RunTimings) -> str:
    """The re-injected tokens saved against a central brain's broadcast of the same run."""
    broadcast = timings.broadcast_reinjected_tokens
    if not broadcast:
        return "no broadcast to compare"
    saved = 1 - timings.reinjected_tokens / broadcast
    return f"a broadcast of every earlier output: {broadcast}, {saved:.0%} saved"


def comparison_table(runs: list[tuple[RunStatus, RunTimings]]) -> Table:
    """Runs side by side (a workflow and its single-model collapse): latency, tokens, cost."""
    table = Table(title="orchestrated vs single-model")
    table.add_column("measure")
    for status, _ in runs:
        table.add_column(f"{status.workflow} ({status.id[:8]})", justify="right")
    rows: list[tuple[str, Callable[[RunTimings, RunStatus], str]]] = [
        ("state", lambda t, s: s.state),
        ("latency ms", lambda t, s: _ms(t.wall_s)),
        ("coordination overhead ms", lambda t, s: _ms(t.overhead_s)),
        ("model calls' time ms", lambda t, s: _ms(sum(step.model_s or 0.0 for step in t.steps))),
        ("prompt tokens", lambda t, s: str(t.prompt_tokens)),
        ("completion tokens", lambda t, s: str(t.completion_tokens)),
        ("re-injected tokens", lambda t, s: str(t.reinjected_tokens)),
        ("cost $", lambda t, s: f"{t.cost:.6f}"),
        ("broker messages", lambda t, s: str(t.broker_messages)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(timings, status) for status, timings in runs))
    return table


class Percentiles(BaseModel):
    p50: float
    p95: float
    p99: float


class Aggregate(BaseModel):
    """Distribution of latency, overhead and tax ratio over finished runs."""

    runs: int
    wall_s: Percentiles
    overhead_s: Percentiles
    tax_ratio: Percentiles
    prompt_tokens_mean: float
    reinjected_tokens_mean: float
    cost_total: float


def percentiles(values: list[float]) -> Percentiles:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0

    return Percentiles(p50=at(0.50), p95=at(0.95), p99=at(0.99))


def aggregate(timings: list[RunTimings]) -> Aggregate:
    finished = [t for t in timings if t.wall_s is not None]
    return Aggregate(
        runs=len(finished),
        wall_s=percentiles([t.wall_s or 0.0 for t in finished]),
        overhead_s=percentiles([t.overhead_s or 0.0 for t in finished]),
        tax_ratio=percentiles([t.tax_ratio or 0.0 for t in finished]),
        prompt_tokens_mean=statistics.fmean([t.prompt_tokens for t in finished]) if finished else 0.0,
        reinjected_tokens_mean=statistics.fmean([t.reinjected_tokens for t in finished]) if finished else 0.0,
        cost_total=sum(t.cost for t in finished),
    )


def aggregate_table(agg: Aggregate, title: str) -> Table:
    table = Table(title=f"{title}: {agg.runs} finished run(s)")
    for column in ("measure", "P50", "P95", "P99"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row("latency ms", _ms(agg.wall_s.p50), _ms(agg.wall_s.p95), _ms(agg.wall_s.p99))
    table.add_row("overhead ms", _ms(agg.overhead_s.p50), _ms(agg.overhead_s.p95), _ms(agg.overhead_s.p99))
    table.add_row("tax ratio", *(f"{v:.1%}" for v in (agg.tax_ratio.p50, agg.tax_ratio.p95, agg.tax_ratio.p99)))
    table.caption = (
        f"mean prompt tokens {agg.prompt_tokens_mean:.0f}, re-injected {agg.reinjected_tokens_mean:.0f}; "
        f"total cost ${agg.cost_total:.6f}"
    )
    return table


# -- HTML --------------------------------------------------------------------------------------

_COLOURS = {"handoff": "#9e9e9e", "queue": "#ff9800", "body": "#1e88e5", "overhead": "#e53935", "parked": "#43a047"}


def gantt_svg(status: RunStatus, timings: RunTimings) -> str:
    """One row per step: handoff, queue wait, body, step overhead and parked time as segments."""
    rows = []
    for step in timings.steps:
        if step.start_offset_s is None:
            continue
        started = step.start_offset_s
        segments = [
            ("handoff", started - (step.queue_wait_s or 0) - (step.handoff_s or 0), step.handoff_s or 0),
            ("queue", started - (step.queue_wait_s or 0), step.queue_wait_s or 0),
        ]
        if step.parked_s is not None:
            segments.append(("parked", started, step.parked_s))
        else:
            segments.append(("body", started, step.body_s or 0))
            segments.append(("overhead", started + (step.body_s or 0), step.step_overhead_s or 0))
        rows.append((step.step, segments))
    end = max((start + width for _, segs in rows for _, start, width in segs), default=1.0) or 1.0
    width_px, row_px, label_px = 900, 26, 110
    scale = (width_px - label_px - 10) / end
    parts = [f'<svg width="{width_px}" height="{row_px * len(rows) + 30}" xmlns="http://www.w3.org/2000/svg">']
    for index, (name, segments) in enumerate(rows):
        y = index * row_px + 5
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{html.escape(name)}</text>')
        for kind, start, width in segments:
            if width <= 0:
                continue
            parts.append(
                f'<rect x="{label_px + start * scale:.1f}" y="{y}" width="{max(width * scale, 1):.1f}" '
                f'height="{row_px - 8}" fill="{_COLOURS[kind]}"><title>{kind}: {width * 1000:.1f} ms</title></rect>'
            )
    # A time axis: five ticks from 0 to the end, labelled in ms.
    axis_y = row_px * len(rows) + 8
    parts.append(f'<line x1="{label_px}" y1="{axis_y}" x2="{width_px - 10}" y2="{axis_y}" stroke="#888"/>')
    for tick in range(5):
        at = end * tick / 4
        x = label_px + at * scale
        parts.append(f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#888"/>')
        anchor = "start" if tick == 0 else "end" if tick == 4 else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 16}" font-size="11" text-anchor="{anchor}">{at * 1000:.0f} ms</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


_STATE_COLOURS = {"succeeded": "#1a7f37", "failed": "#a31515", "running": "#1f5fbf", "dispatched": "#1f5fbf",
                  "retrying": "#9a6700", "parked": "#9a6700", "skipped": "#8c959f"}  # fmt: skip


def dag_svg(plan: RunPlan, status: RunStatus) -> str:
    """The workflow as a graph: steps in columns by depth, an arrow per dependency, each step
    coloured by its state (grey: not started)."""
    depth: dict[str, int] = {}
    for name, step in plan.items():  # plans are listed in workflow order: dependencies first
        if not step.is_check:
            depth[name] = 1 + max((depth.get(dep, 0) for dep in step.after), default=-1)
    columns: dict[int, list[str]] = {}
    for name, level in depth.items():
        columns.setdefault(level, []).append(name)
    box_w, box_h, gap_x, gap_y = 140, 34, 60, 16
    where = {
        name: (level * (box_w + gap_x) + 5, row * (box_h + gap_y) + 5)
        for level, names in columns.items()
        for row, name in enumerate(names)
    }
    width = (max(columns, default=0) + 1) * (box_w + gap_x)
    height = max((len(names) for names in columns.values()), default=1) * (box_h + gap_y) + 10
    parts = [f'<svg class="dag" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for name in depth:
        for dep in plan[name].after:
            if dep in where:
                (x1, y1), (x2, y2) = where[dep], where[name]
                parts.append(
                    f'<line x1="{x1 + box_w}" y1="{y1 + box_h / 2}" x2="{x2}" y2="{y2 + box_h / 2}" stroke="#8c959f"/>'
                )
    for name, (x, y) in where.items():
        state = status.steps[name].state if name in status.steps else "pending"
        colour = _STATE_COLOURS.get(state, "#d0d7de")
        parts.append(
            f'<g class="node" data-step="{html.escape(name)}" data-state="{html.escape(state)}">'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{colour}"/>'
            f'<text x="{x + 8}" y="{y + 21}" font-size="12" fill="white">{html.escape(name)} · {html.escape(state)}'
            f"</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _histogram(values: list[float], label: str, unit_scale: float, unit: str) -> str:
    if not values:
        return ""
    bins = 12
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    tallest = max(counts)
    parts = [f'<figure><figcaption>{html.escape(label)}</figcaption><svg width="420" height="140">']
    for index, count in enumerate(counts):
        height = 100 * count / tallest
        parts.append(
            f'<rect x="{index * 34 + 10}" y="{110 - height:.1f}" width="30" height="{height:.1f}" fill="#1e88e5">'
            f"<title>{count}</title></rect>"
        )
    parts.append(
        f'<text x="10" y="130" font-size="11">{low * unit_scale:.1f} {unit}</text>'
        f'<text x="330" y="130" font-size="11">{high * unit_scale:.1f} {unit}</text></svg></figure>'
    )
    return "".join(parts)


_STEP_COLUMNS = ("step", "agent", "state", "handoff ms", "queue ms", "body ms", "step overhead ms", "tries",
                 "tokens in/out", "cached", "re-injected", "broadcast would re-inject", "cost $")  # fmt: skip


def _step_table(timings: RunTimings) -> str:
    """Each step's accounting, as `agentchord status` prints it."""
    head = "".join(f"<th>{name}</th>" for name in _STEP_COLUMNS)
    rows = []
    for step in timings.steps:
        cells: list[object] = [
            step.step,
            step.agent,
            "reused" if step.reused_from else step.state,
            _ms(step.handoff_s),
            _ms(step.queue_wait_s),
        ]
        cells.append(_ms(step.body_s))
        cells += [_ms(step.step_overhead_s), step.attempts, f"{step.prompt_tokens}/{step.completion_tokens}"]
        cells += [step.cached_tokens, step.reinjected_tokens, step.broadcast_reinjected_tokens, f"{step.cost:.6f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>")
    return f'<table border="1" cellpadding="4" style="border-collapse:collapse"><tr>{head}</tr>{"".join(rows)}</table>'


def render_html(runs: list[tuple[RunStatus, RunTimings]], agg: Aggregate | None = None) -> str:
    """A self-contained page: a Gantt timeline per run and the aggregate histograms."""
    legend = " ".join(
        f'<span style="background:{colour};color:white;padding:2px 6px">{kind}</span>'
        for kind, colour in _COLOURS.items()
    )
    sections = []
    for status, timings in runs[:20]:
        ratio = "-" if timings.tax_ratio is None else f"{timings.tax_ratio:.1%}"
        sections.append(
            f"<h2>run {html.escape(status.id)} ({html.escape(status.workflow)}): {html.escape(status.state)}</h2>"
            f"<p>wall {_ms(timings.wall_s)} ms, overhead {_ms(timings.overhead_s)} ms ({ratio}), parked "
            f"{_ms(timings.parked_s)} ms, tokens {timings.prompt_tokens}/{timings.completion_tokens} "
            f"(cached {timings.cached_tokens}, re-injected {timings.reinjected_tokens}; {broadcast_saving(timings)}), "
            f"broker messages {timings.broker_messages}</p>" + gantt_svg(status, timings) + _step_table(timings)
        )
    histograms = ""
    if len(runs) == 1:
        steps = runs[0][1].steps
        histograms = (
            "<h2>this run's steps</h2>"
            + _histogram([s.queue_wait_s or 0 for s in steps], "queue wait per step", 1000, "ms")
            + _histogram([s.body_s or 0 for s in steps], "body time per step", 1000, "ms")
        )
    if agg is not None and len(runs) > 1:
        all_timings = [t for _, t in runs if t.wall_s is not None]
        histograms = (
            f"<h2>{agg.runs} runs</h2><p>latency P50/P95/P99: {_ms(agg.wall_s.p50)} / {_ms(agg.wall_s.p95)} / "
            f"{_ms(agg.wall_s.p99)} ms; tax ratio P50 {agg.tax_ratio.p50:.1%}</p>"
            + _histogram([t.wall_s or 0 for t in all_timings], "latency", 1000, "ms")
            + _histogram([t.overhead_s or 0 for t in all_timings], "coordination overhead", 1000, "ms")
            + _histogram([t.tax_ratio or 0 for t in all_timings], "tax ratio", 100, "%")
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>agentchord report</title>"
        "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block}</style></head><body>"
        f"<h1>agentchord: coordination tax</h1><p>{legend}</p>{''.join(sections)}{histograms}</body></html>"
    )


def report_json(runs: list[tuple[RunStatus, RunTimings]], agg: Aggregate | None) -> dict[str, Any]:
    return {
        "runs": [{"status": s.model_dump(), "timings": t.model_dump()} for s, t in runs],
        "aggregate": agg.model_dump() if agg else None,
    }
