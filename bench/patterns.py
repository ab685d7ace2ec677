"""Context patterns for the code-review pipeline: tokens, latency and cost per run.

- dependency-filtered: each agent sees only the outputs it declared (the built-in workflow);
- full context ("central brain"): each agent sees the whole run (bench/tokens_tasks.py);
- handoff record: the typed record plus the declared dependencies (bench/patterns_tasks.py);
- single-model collapse: the whole workflow as one model call (start(..., collapse=True)).

The offline model simulates 200 ms per call; cost uses an illustrative price table
(0.15 / 0.60 $ per million prompt / completion tokens).

    python bench/patterns.py            # 10 runs of each, interleaved
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import WorkerSpec, bench_stack, command_line, exit_now, machine, print_table, write_json
from bench.tokens import BRAIN
from coordinator import Run, RunTimings, Step, Workflow, builtin_workflow, start
from coordinator.interfaces.demo import SAMPLE_DIFF
from proj.queues import COORDINATOR_QUEUE

HANDOFF = Workflow(
    name="code_review_handoff",
    handoff=True,
    steps=[
        Step(name="review", agent="handoff_reviewer"),
        Step(name="tests", agent="handoff_test_writer", after=["review"]),
        Step(name="docs", agent="handoff_doc_generator", after=["review"]),
        Step(name="merge", agent="handoff_merger", after=["tests", "docs"]),
    ],
)
PRICES = {"offline": (0.15, 0.60)}


def variants() -> list[tuple[str, Workflow, bool]]:
    filtered = builtin_workflow("code_review")
    return [
        ("dependency-filtered", filtered, False),
        ("full context (central brain)", BRAIN, False),
        ("handoff record", HANDOFF, False),
        ("single-model collapse", filtered, True),
    ]


def one(workflow: Workflow, collapse: bool) -> tuple[float, RunTimings, dict[str, Any]]:
    began = time.perf_counter()
    run: Run = start(workflow, input={"diff": SAMPLE_DIFF}, collapse=collapse)
    results = run.wait(timeout=120)
    return time.perf_counter() - began, run.timings(), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--quick", action="store_true", help="2 runs of each")
    parser.add_argument("--out", default="bench/results/patterns.json")
    parser.add_argument("--log-dir", default=None, help="write worker logs here")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs

    roles = sorted({s.agent for _, wf, _ in variants() for s in wf.steps if s.agent} | {"collapsed"})
    modules = ("bench.tokens_tasks", "bench.patterns_tasks")
    workers = [WorkerSpec([*roles, COORDINATOR_QUEUE], "patterns", concurrency=4)]
    measured: dict[str, list[tuple[float, RunTimings]]] = {name: [] for name, _, _ in variants()}
    answers: dict[str, Any] = {}
    logs = Path(args.log_dir) if args.log_dir else None
    with bench_stack(modules, workers, logs, simulated_latency_ms=args.latency_ms, model_prices=PRICES):
        for _name, workflow, collapse in variants():
            one(workflow, collapse)  # warm-up
        for _ in range(runs):
            for name, workflow, collapse in variants():
                wall, timings, results = one(workflow, collapse)
                measured[name].append((wall, timings))
                answers[name] = results.get("all", results)

    rows, result_rows = [], []
    for name, samples in measured.items():
        timings = [t for _, t in samples]
        row = {
            "pattern": name,
            "p50_latency_ms": statistics.median(w for w, _ in samples) * 1000,
            "model_calls": sum(1 for s in timings[-1].steps if s.model_s),
            "prompt_tokens": statistics.fmean(t.prompt_tokens for t in timings),
            "reinjected_tokens": statistics.fmean(t.reinjected_tokens for t in timings),
            "completion_tokens": statistics.fmean(t.completion_tokens for t in timings),
            "cost_usd": statistics.fmean(t.cost for t in timings),
            "tax_ratio": statistics.fmean(t.tax_ratio or 0.0 for t in timings),
            "same_merge_decision": answers[name]["merge"]["decision"]
            == answers["dependency-filtered"]["merge"]["decision"],
        }
        result_rows.append(row)
        rows.append(
            [
                name,
                f"{row['p50_latency_ms']:.0f}",
                row["model_calls"],
                f"{row['prompt_tokens']:.0f}",
                f"{row['reinjected_tokens']:.0f}",
                f"{row['completion_tokens']:.0f}",
                f"{row['cost_usd'] * 1e6:.1f}",
                f"{row['tax_ratio']:.1%}",
                "yes" if row["same_merge_decision"] else "no",
            ]
        )
    print(f"\nCode-review pipeline on the demo diff, {runs} runs of each, {args.latency_ms:g} ms per model call\n")
    print_table(
        ["pattern", "P50 latency ms", "model calls", "prompt tokens", "re-injected", "completion tokens",
         "cost µ$ / run", "tax ratio", "same merge decision"],
        rows,
    )  # fmt: skip
    write_json(
        args.out,
        {"command": command_line(), "runs": runs, "latency_ms": args.latency_ms, "rows": result_rows, **machine()},
    )


if __name__ == "__main__":
    main()
    exit_now()
