"""Tokens: what an agent is shown, on three workflows, three ways.

- **broadcast** (a central brain): every step depends on every earlier one and its prompt carries
  all of their outputs, instruction first (no shaping for a prefix cache);
- **whole outputs** (agentchord without ``uses``): a step sees only the steps it declared in
  ``after``, whole; prompts shaped for the prefix cache (the run's input first);
- **field-level** (``uses``): a step sees only the fields it names of those steps.

Workflows: the built-in ``code_review`` diamond on SAMPLE_DIFF (its broadcast is the four
``brain_*`` roles of bench/tokens_tasks.py); an 8-agent pipeline over a long document with a
four-way fan-out; a planner feeding four workers and an aggregator. Every role computes its
answer from the fields it uses, so the three ways must give the same answers: the bench checks.

Prompt, re-injected and cached tokens and the stored cost come from ``Run.timings()`` (the
offline model simulates a provider's prefix cache; prices per million tokens below). Each run's
input starts with a fresh key, so no run is served from another run's cache.

    python bench/tokens.py
    python bench/tokens.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import WorkerSpec, bench_stack, command_line, exit_now, machine, print_table, write_json
from coordinator import RunTimings, Step, Workflow, builtin_workflow, start
from coordinator.interfaces.demo import SAMPLE_DIFF
from proj.queues import COORDINATOR_QUEUE

# gpt-4o-mini's list prices per million prompt, completion and cached prompt tokens.
PRICES = {"offline": (0.15, 0.60, 0.075)}
MODES = ("broadcast", "whole", "fields")
TOTALS = ("prompt_tokens", "reinjected_tokens", "cached_tokens", "prompt_cost", "cost")

CODE_REVIEW_BROADCAST = Workflow(
    name="code_review_broadcast",
    description="Every agent sees the input and the outputs of all earlier steps.",
    steps=[
        Step(name="review", agent="brain_reviewer"),
        Step(name="tests", agent="brain_test_writer", after=["review"]),
        Step(name="docs", agent="brain_doc_generator", after=["review", "tests"]),
        Step(name="merge", agent="brain_merger", after=["review", "tests", "docs"]),
    ],
)


def code_review_fields() -> Workflow:
    """The built-in diamond, each step naming the fields its role reads."""
    uses = {
        "tests": {"review": ["findings"]},
        "merge": {"tests": ["count", "blocking"], "docs": ["documented", "undocumented"]},
    }
    base = builtin_workflow("code_review")
    steps = [s.model_copy(update={"uses": uses.get(s.name)}) for s in base.steps]
    return Workflow(name="code_review_fields", steps=steps)


# (step, kind, section, reads): what each generic step does and which fields it reads.
PIPELINE = [
    ("outline", "outline", None, {}),
    *[(f"s{i}", "section", i, {"outline": ["title", "points"]}) for i in range(4)],
    ("critique", "critique", None, {f"s{i}": ["points", "score"] for i in range(4)}),
    ("summary", "summary", None, {"critique": ["points"], **{f"s{i}": ["score"] for i in range(4)}}),
    ("final", "final", None, {"summary": ["points", "score"], "outline": ["title"]}),
]
PLANNER = [
    ("plan", "planner", None, {}),
    *[(f"w{i}", "worker", i, {"plan": ["points"]}) for i in range(4)],
    ("report", "aggregate", None, {f"w{i}": ["points", "score"] for i in range(4)}),
]


def generic(name: str, table: list[tuple[str, str, int | None, dict[str, list[str]]]], mode: str) -> Workflow:
    steps = []
    for index, (step, kind, section, reads) in enumerate(table):
        params: dict[str, Any] = {"kind": kind, "reads": reads, **({} if section is None else {"section": section})}
        if mode == "broadcast":
            after, uses, params["broadcast"] = [s for s, *_ in table[:index]], None, True
        else:
            after, uses = list(reads), (reads or None) if mode == "fields" else None
        steps.append(Step(name=step, agent="bench_agent", after=after, uses=uses, params=params))
    return Workflow(name=f"{name}_{mode}", steps=steps)


def document() -> str:
    """A long, deterministic document: eight sections of about 150 words."""
    words = "latency tokens queue worker handoff cache prefix budget retry lease plan review merge docs"
    words = words.split()
    sections = []
    for s in range(8):
        sentences = [
            " ".join(words[(s * 7 + i * 3 + j) % len(words)] for j in range(14)).capitalize() + "." for i in range(11)
        ]
        sections.append(" ".join(sentences))
    return "\n\n".join(sections)


WORKFLOWS: dict[str, tuple[dict[str, Workflow], dict[str, Any]]] = {
    "code_review": (
        {"broadcast": CODE_REVIEW_BROADCAST, "whole": builtin_workflow("code_review"), "fields": code_review_fields()},
        {"diff": SAMPLE_DIFF},
    ),
    "pipeline_8_agents": ({mode: generic("pipeline", PIPELINE, mode) for mode in MODES}, {"document": document()}),
    "planner_4_workers": (
        {mode: generic("planner", PLANNER, mode) for mode in MODES},
        {"document": document(), "request": "review the document for a release"},
    ),
}


def one_run(workflow: Workflow, payload: dict[str, Any]) -> tuple[RunTimings, dict[str, Any]]:
    run = start(workflow, input={"_run": uuid.uuid4().hex, **payload})  # sorts first: a cold cache
    results = run.wait(timeout=120)
    return run.timings(), results


def prompt_cost(t: RunTimings | Any) -> float:
    """What the prompts alone are billed: uncached at the prompt rate, cached at the cached rate."""
    rate, _, cached_rate = PRICES["offline"]
    return ((t.prompt_tokens - t.cached_tokens) * rate + t.cached_tokens * cached_rate) / 1e6


def measure(t: RunTimings | Any, name: str) -> float:
    return prompt_cost(t) if name == "prompt_cost" else float(getattr(t, name))


def mean(timings: list[RunTimings]) -> dict[str, float]:
    return {name: statistics.fmean(measure(t, name) for t in timings) for name in TOTALS}


def report(result: dict[str, Any]) -> None:
    print(f"\nTokens and cost per run, offline model with a simulated prefix cache, {result['runs']} runs per way\n")
    rows = []
    for name, entry in result["workflows"].items():
        b, w, f = (entry["per_run"][mode] for mode in MODES)
        for label, key in (
            ("prompt tokens", "prompt_tokens"),
            ("re-injected", "reinjected_tokens"),
            ("cached", "cached_tokens"),
        ):
            rows.append([name, label, f"{b[key]:.0f}", f"{w[key]:.0f}", f"{f[key]:.0f}", _cut(f[key], b[key])])
        for label, key in (("prompt cost µ$", "prompt_cost"), ("total cost µ$", "cost")):
            cells = [f"{entry['per_run'][mode][key] * 1e6:.1f}" for mode in MODES]
            rows.append([name, label, *cells, _cut(f[key], b[key])])
        rows.append([name, "same answers (all three ways)", "", "", "yes" if entry["same_answers"] else "NO", ""])
    print_table(["workflow", "per run", "broadcast", "whole outputs", "field-level", "field-level vs broadcast"], rows)


def _cut(value: float, baseline: float) -> str:
    if not baseline:
        return "n/a"
    change = (1 - value / baseline) * 100
    return f"**{change:.0f}% less**" if change >= 0 else f"{-change:.0f}% more"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 runs per way")
    parser.add_argument("--runs", type=int, default=5, help="runs of each workflow each way")
    parser.add_argument("--out", default="bench/results/tokens.json")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs

    roles = sorted({s.agent for wfs, _ in WORKFLOWS.values() for wf in wfs.values() for s in wf.steps if s.agent})
    began = time.perf_counter()
    workers = [WorkerSpec([*roles, COORDINATOR_QUEUE], "tokens", concurrency=2)]
    entries: dict[str, Any] = {}
    with bench_stack(("bench.tokens_tasks",), workers, model_prices=PRICES):
        for name, (modes, payload) in WORKFLOWS.items():
            timings: dict[str, list[RunTimings]] = {mode: [] for mode in MODES}
            answers: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
            for _ in range(runs):
                for mode in MODES:  # interleaved
                    t, results = one_run(modes[mode], payload)
                    timings[mode].append(t)
                    answers[mode].append(results)
            same = all(answers[mode] == answers["broadcast"] for mode in MODES)
            entries[name] = {
                "per_run": {mode: mean(timings[mode]) for mode in MODES},
                "per_step": {
                    mode: {s.step: {k: measure(s, k) for k in TOTALS} for s in timings[mode][-1].steps}
                    for mode in MODES
                },
                "same_answers": same,
            }
    result: dict[str, Any] = {
        "command": command_line(),
        "runs": runs,
        "prices_per_million": PRICES["offline"],
        "workflows": entries,
        "elapsed_s": round(time.perf_counter() - began, 1),
        **machine(),
    }
    report(result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
    exit_now()
