"""Tokens: dependency-filtered context vs a "central brain" that shows every agent everything.

- filtered: the built-in ``code_review`` pipeline (reviewer -> test_writer | doc_generator ->
  merger); each agent's prompt holds the input and only the outputs of the steps it declared;
- central brain: the same four roles (bench/tokens_tasks.py: same prompts, output models and
  offline skills) chained review -> tests -> docs -> merge, each step depending on *all*
  earlier ones and putting every one of their outputs into its prompt.

Both run the offline model on ``coordinator.interfaces.demo.SAMPLE_DIFF``, interleaved, on the same
workers. Prompt and re-injected tokens come from ``Run.timings()``; the answers of both
pipelines are compared, so the saving is not bought with a different result.

    python bench/tokens.py
    python bench/tokens.py --quick
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
from coordinator import RunTimings, Step, Workflow, builtin_workflow, start
from coordinator.interfaces.demo import SAMPLE_DIFF
from proj.queues import COORDINATOR_QUEUE

BRAIN = Workflow(
    name="code_review_central_brain",
    description="Every agent sees the input and the outputs of all earlier steps.",
    steps=[
        Step(name="review", agent="brain_reviewer"),
        Step(name="tests", agent="brain_test_writer", after=["review"]),
        Step(name="docs", agent="brain_doc_generator", after=["review", "tests"]),
        Step(name="merge", agent="brain_merger", after=["review", "tests", "docs"]),
    ],
)
TOTALS = ("prompt_tokens", "reinjected_tokens", "completion_tokens")


def one_run(workflow: Workflow) -> tuple[RunTimings, dict[str, Any]]:
    run = start(workflow, input={"diff": SAMPLE_DIFF})
    results = run.wait(timeout=60)
    return run.timings(), results


def per_run(timings: list[RunTimings]) -> dict[str, float]:
    return {name: statistics.fmean(getattr(t, name) for t in timings) for name in TOTALS}


def per_step(timings: RunTimings) -> dict[str, dict[str, int]]:
    return {s.step: {"prompt_tokens": s.prompt_tokens, "reinjected_tokens": s.reinjected_tokens} for s in timings.steps}


def constant(timings: list[RunTimings]) -> bool:
    """The offline model is deterministic: every run of a pipeline should cost the same."""
    return len({tuple(getattr(t, name) for name in TOTALS) for t in timings}) == 1


def report(result: dict[str, Any]) -> None:
    filtered, brain = result["filtered"]["per_run"], result["central_brain"]["per_run"]
    print(
        f"\nCode-review pipeline on SAMPLE_DIFF, offline model, {result['runs']} runs each, interleaved; "
        "tokens per run from Run.timings()\n"
    )
    rows = [
        [
            label.replace("_", " "),
            f"{filtered[name]:.0f}",
            f"{brain[name]:.0f}",
            f"**{brain[name] / filtered[name]:.2f}x**" if filtered[name] else "n/a",
        ]
        for label, name in (("prompt tokens", "prompt_tokens"), ("re-injected tokens", "reinjected_tokens"))
    ]
    print_table(["per run", "dependency-filtered", "central brain (all earlier outputs)", "baseline / filtered"], rows)
    print()
    steps_f, steps_b = result["filtered"]["per_step"], result["central_brain"]["per_step"]
    step_rows = [
        [
            step,
            steps_f[step]["prompt_tokens"],
            steps_f[step]["reinjected_tokens"],
            steps_b[step]["prompt_tokens"],
            steps_b[step]["reinjected_tokens"],
        ]
        for step in steps_f
    ]
    print_table(["step", "filtered prompt", "filtered re-injected", "brain prompt", "brain re-injected"], step_rows)
    print(
        f"\nsame answers from both pipelines: {'yes' if result['same_outputs'] else 'NO'}; "
        f"token counts constant across runs: {'yes' if result['constant'] else 'NO'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 runs each")
    parser.add_argument("--runs", type=int, default=20, help="runs of each pipeline")
    parser.add_argument("--out", default="bench/results/tokens.json")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs

    filtered_wf = builtin_workflow("code_review")
    roles = sorted({s.agent for wf in (filtered_wf, BRAIN) for s in wf.steps if s.agent})
    began = time.perf_counter()
    with bench_stack(("bench.tokens_tasks",), [WorkerSpec([*roles, COORDINATOR_QUEUE], "tokens")]):
        filtered: list[RunTimings] = []
        brain: list[RunTimings] = []
        same = True
        for _ in range(runs):
            timings_f, results_f = one_run(filtered_wf)
            timings_b, results_b = one_run(BRAIN)
            filtered.append(timings_f)
            brain.append(timings_b)
            same = same and results_f == results_b
    elapsed = time.perf_counter() - began

    result: dict[str, Any] = {
        "command": command_line(),
        "runs": runs,
        "diff_lines": len(SAMPLE_DIFF.splitlines()),
        "filtered": {"workflow": filtered_wf.name, "per_run": per_run(filtered), "per_step": per_step(filtered[-1])},
        "central_brain": {"workflow": BRAIN.name, "per_run": per_run(brain), "per_step": per_step(brain[-1])},
        "same_outputs": same,
        "constant": constant(filtered) and constant(brain),
        "elapsed_s": round(elapsed, 1),
        **machine(),
    }
    for name in TOTALS:
        f, b = result["filtered"]["per_run"][name], result["central_brain"]["per_run"][name]
        result[f"ratio_{name}"] = b / f if f else None
    report(result)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
    exit_now()
