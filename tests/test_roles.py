"""Built-in roles as plain functions over the offline model (no Celery, no Redis)."""

from __future__ import annotations

from agents import StepContext
from agents.doc_generator import generate_docs
from agents.merger import merge
from agents.reviewer import find_issues, review
from agents.router import route
from agents.test_writer import write_tests
from agents.validator import validate
from coordinator.interfaces.demo import SAMPLE_DIFF


def ctx(step: str, agent: str, **kwargs: object) -> StepContext:
    return StepContext(run_id="r", step=step, agent=agent, **kwargs)  # type: ignore[arg-type]


def test_reviewer_flags_concrete_issues_at_their_lines() -> None:
    found = {(f.rule, f.line) for f in find_issues(SAMPLE_DIFF)}
    assert ("star-import", 2) in found
    assert ("hardcoded-secret", 4) in found
    assert ("none-compare", 9) in found
    assert ("bare-except", 17) in found
    assert ("debug-print", 18) in found
    assert ("todo", 19) in found


def test_reviewer_approves_a_clean_diff() -> None:
    clean = "--- a/x.py\n+++ b/x.py\n@@ -1 +1,2 @@\n x = 1\n+y = x + 1\n"
    output = review(ctx("review", "reviewer", input={"diff": clean}))
    assert output.findings == [] and output.approve is True


def test_pipeline_roles_chain_on_each_others_outputs() -> None:
    reviewed = review(ctx("review", "reviewer", input={"diff": SAMPLE_DIFF})).model_dump()
    tests = write_tests(ctx("tests", "test_writer", input={"diff": SAMPLE_DIFF}, dependencies={"review": reviewed}))
    docs = generate_docs(ctx("docs", "doc_generator", input={"diff": SAMPLE_DIFF}, dependencies={"review": reviewed}))
    assert {t.target for t in tests.tests} >= {"apply_discount", "parse_amount"}
    assert len(tests.blocking) == 2
    assert docs.undocumented == ["parse_amount"]
    merged = merge(ctx("merge", "merger", dependencies={"t": tests.model_dump(), "d": docs.model_dump()}))
    assert merged.decision == "request_changes"
    assert "undocumented: parse_amount" in merged.reasons


def test_router_picks_the_route_with_most_keywords_and_falls_back_to_default() -> None:
    params = {"routes": {"bug": ["crash", "error"], "feature": ["add"]}, "default": "feature"}
    chosen = route(ctx("route", "router", input={"text": "App crash with error on save"}, params=params))
    assert chosen.route == "bug" and chosen.confidence == 1.0
    fallback = route(ctx("route", "router", input={"text": "hello"}, params=params))
    assert fallback.route == "feature" and fallback.confidence == 0.0


def test_validator_fails_missing_fields_and_low_confidence() -> None:
    params = {"required": ["route"], "min_confidence": 0.5}
    passed = validate(ctx("check", "validator", dependencies={"r": {"route": "bug", "confidence": 0.9}}, params=params))
    assert passed.verdict == "PASS"
    failed = validate(ctx("check", "validator", dependencies={"r": {"route": "", "confidence": 0.2}}, params=params))
    assert failed.verdict == "FAIL"
    assert failed.issues == ["r: missing or empty 'route'", "r: confidence 0.2 below 0.5"]
