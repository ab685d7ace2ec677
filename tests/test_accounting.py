"""The coordination-tax accounting on a synthetic workflow with known sleeps and context sizes."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from agents.llm import count_tokens, step_cost
from coordinator import Step, Workflow, start
from coordinator.observation.report import aggregate, render_html
from proj.settings import Settings

pytestmark = pytest.mark.usefixtures("worker")


def known() -> Workflow:
    return Workflow(
        name="accounting",
        steps=[
            Step(name="produce", agent="accountant", params={"sleep_s": 0.3, "words": 50}),
            Step(
                name="a",
                agent="accountant",
                after=["produce"],
                params={"sleep_s": 0.2, "words": 7, "inject": ["produce"]},
            ),
            Step(name="b", agent="accountant", after=["produce"], params={"sleep_s": 0.05, "words": 3}),
            Step(name="join", agent="accountant", after=["a", "b"], params={"sleep_s": 0.1, "inject": ["a", "b"]}),
        ],
    )


def test_breakdown_adds_up_to_wall_time_and_reinjected_tokens_are_exact(client: redis.Redis) -> None:
    run = start(known(), input={"pr": 1})
    results = run.wait(timeout=60)
    timings = run.timings()
    by_step = {s.step: s for s in timings.steps}

    # Re-injected tokens: exactly the tokens of the outputs each step put into its prompts.
    def tokens_of(step: str) -> int:
        return count_tokens(json.dumps(results[step], sort_keys=True))

    assert by_step["produce"].reinjected_tokens == 0
    assert by_step["a"].reinjected_tokens == tokens_of("produce") == 51
    assert by_step["b"].reinjected_tokens == 0
    assert by_step["join"].reinjected_tokens == tokens_of("a") + tokens_of("b")
    assert timings.reinjected_tokens == 51 + tokens_of("a") + tokens_of("b")

    # Context bytes: the workflow input plus exactly the dependencies' stored outputs.
    input_bytes = len(json.dumps({"pr": 1}))
    assert by_step["a"].context_bytes == input_bytes + len(json.dumps(results["produce"]))
    assert by_step["join"].context_bytes == input_bytes + len(json.dumps(results["a"])) + len(json.dumps(results["b"]))
    assert by_step["produce"].result_bytes == len(json.dumps(results["produce"]))

    # The breakdown walks the critical chain and adds up to the wall time.
    breakdown = timings.breakdown
    assert breakdown is not None and timings.wall_s is not None
    assert breakdown.steps == ["produce", "a", "join"]
    assert breakdown.total_s == pytest.approx(timings.wall_s, rel=0.02)
    # The known sleeps are the body time on that chain, and nothing else is.
    assert 0.6 <= breakdown.body_s < 0.6 + 0.05
    assert timings.critical_path_body_s == pytest.approx(breakdown.body_s, rel=0.01)
    assert timings.overhead_s == pytest.approx(timings.wall_s - timings.critical_path_body_s, abs=1e-6)
    assert 0 < timings.tax_ratio < 1  # type: ignore[operator]
    # Each step: queue wait split at the worker's receipt; body within its run time.
    for step in by_step.values():
        assert step.queue_wait_s is not None and step.broker_wait_s is not None
        assert 0 <= step.broker_wait_s <= step.queue_wait_s
        assert step.body_s is not None and step.run_s is not None and step.body_s <= step.run_s
        assert step.attempts == 1
    # Messages: the 4 agent tasks and nothing else (each worker sends its successors itself).
    assert timings.broker_messages == 4


def test_prices_turn_tokens_into_cost_and_reports_aggregate(client: redis.Redis) -> None:
    from proj.celery import current_settings

    run = start(known(), input={})
    run.wait(timeout=60)
    # Each step's cost was stored when it finished, with the prices in force then (conftest:
    # 1.0 / 4.0 / 0.25 per million prompt, completion, cached tokens): a reader with other prices
    # sees the same cost.
    repriced = current_settings().model_copy(update={"model_prices": {"offline": (1_000_000.0, 2_000_000.0)}})
    from coordinator.observation.timing import compute_timings
    from proj.registry import registry_for

    registry = registry_for(current_settings())
    timings = compute_timings(
        registry.run_record(run.id), run.plan(), registry.step_records(run.id), run.events(), repriced.model_prices
    )
    billed = sum(
        step_cost(current_settings().model_prices, "offline", s.prompt_tokens, s.completion_tokens, s.cached_tokens)
        for s in timings.steps
    )
    assert timings.cost == pytest.approx(billed) and billed > 0
    agg = aggregate([timings, run.timings()])
    assert agg.runs == 2 and agg.wall_s.p50 == pytest.approx(timings.wall_s)
    page = render_html([(run.status(), timings)], agg)
    assert page.startswith("<!doctype html>") and "<svg" in page and "queue" in page
    assert "src=" not in page and "href=" not in page  # self-contained: nothing to fetch
    single = render_html([(run.status(), timings)])
    # One run: the Gantt has a time axis, and the page has the per-step table and histograms.
    assert single.count("text-anchor=") == 5 and ">0 ms</text>" in single  # five ticks, from 0 ms
    assert "<th>queue ms</th>" in single and single.count("<tr>") == len(timings.steps) + 1
    assert "queue wait per step" in single and "body time per step" in single


def test_a_step_bills_cached_prompt_tokens_at_their_own_rate() -> None:
    prices = {"m": (2.0, 8.0, 0.5), "legacy": (2.0, 8.0)}
    # 1,000 prompt tokens of which 600 cached, 100 completion tokens.
    assert step_cost(prices, "m", 1000, 100, 600) == pytest.approx((400 * 2.0 + 600 * 0.5 + 100 * 8.0) / 1e6)
    # Without a cached rate, cached tokens cost the prompt rate; an unknown model costs nothing.
    assert step_cost(prices, "legacy", 1000, 100, 600) == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6)
    assert step_cost(prices, "unknown", 1000, 100, 600) == 0.0
    with pytest.raises(ValueError, match="MODEL_PRICES"):
        Settings(model_prices={"m": (1.0,)})


def test_prompts_share_the_runs_input_as_a_cached_prefix(client: redis.Redis) -> None:
    from coordinator.interfaces.demo import SAMPLE_DIFF

    # A key that sorts first makes this input's prefix new to the (session-wide) simulated cache.
    fresh = {"_case": uuid.uuid4().hex, "diff": SAMPLE_DIFF}
    first = start("code_review", input=fresh)
    first.wait(timeout=60)
    steps = {s.step: s for s in first.timings().steps}
    # The reviewer is the first to send this input: nothing cached. Every later step of the run
    # starts its prompt with the same shared context (the input), which the simulated provider
    # cache serves; its instructions and own parts come after and are not cached.
    assert steps["review"].cached_tokens == 0
    for name in ("tests", "docs", "merge"):
        assert 0 < steps[name].cached_tokens < steps[name].prompt_tokens, name
    # A rerun of the same input finds even the reviewer's whole prompt cached (a whole block short).
    again = start("code_review", input=fresh)
    again.wait(timeout=60)
    review = next(s for s in again.timings().steps if s.step == "review")
    assert review.prompt_tokens - 16 < review.cached_tokens <= review.prompt_tokens


def test_report_shows_each_steps_cached_tokens_cost_and_the_broadcast_it_avoided(client: redis.Redis) -> None:
    from coordinator.interfaces.demo import SAMPLE_DIFF
    from coordinator.observation.report import broadcast_saving

    run = start("code_review", input={"diff": SAMPLE_DIFF})
    results = run.wait(timeout=60)
    timings = run.timings()
    steps = {s.step: s for s in timings.steps}

    def tokens(step: str) -> int:
        return count_tokens(json.dumps(results[step], sort_keys=True))

    # The merge started after the three others finished: a broadcast would have re-sent all three;
    # it re-injected only its two dependencies' outputs.
    assert steps["merge"].broadcast_reinjected_tokens == tokens("review") + tokens("tests") + tokens("docs")
    assert 0 < steps["merge"].reinjected_tokens < steps["merge"].broadcast_reinjected_tokens
    assert steps["review"].broadcast_reinjected_tokens == 0  # nothing had finished before it
    assert timings.broadcast_reinjected_tokens == sum(s.broadcast_reinjected_tokens for s in timings.steps)
    saved = 1 - timings.reinjected_tokens / timings.broadcast_reinjected_tokens
    assert f"{saved:.0%} saved" in broadcast_saving(timings)
    assert all(s.cost > 0 for s in timings.steps)  # stored per step (conftest prices the offline model)
