"""The OpenAI-compatible backend against a local fake server, and the shared rate limiter."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from agents.llm import Message
from agents.openai_backend import OpenAICompatibleModel
from agents.reviewer import ReviewOutput
from coordinator import Step, Workflow, start
from coordinator.interfaces.demo import SAMPLE_DIFF
from proj.errors import PermanentModelError, RunNeedsAttentionError, TransientModelError
from proj.policy import RetryPolicy
from proj.ratelimit import RateLimit, RateLimiter
from proj.registry import registry_for
from proj.settings import Settings
from tests.fake_openai import API_KEY, FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ReviewOutput.model_json_schema()


def ask(settings: Settings, text: str) -> Any:
    backend = OpenAICompatibleModel(settings, "fake-model")
    try:
        return backend.complete([Message.system("review"), Message.user(text)], task="reviewer", json_schema=SCHEMA)
    finally:
        backend.close()


def test_request_carries_model_key_schema_and_usage_comes_from_the_server(
    settings: Settings, fake_openai: FakeOpenAI
) -> None:
    completion = ask(settings, "[[id first]]\n+++ b/a.py\n@@ -0,0 +1 @@\n+eval(x)\n")
    sent = fake_openai.about("[[id first]]")[-1]
    assert sent["authorization"] == f"Bearer {API_KEY}"
    assert sent["body"]["model"] == "fake-model" and sent["body"]["max_tokens"] == settings.llm_max_tokens
    assert sent["body"]["response_format"]["json_schema"]["name"] == "reviewer"
    review = ReviewOutput.model_validate_json(completion.text)
    assert [f.rule for f in review.findings] == ["eval"]
    assert (completion.prompt_tokens, completion.completion_tokens) == (123, 45)
    assert completion.cached_tokens == 100  # usage.prompt_tokens_details.cached_tokens


def test_tokens_are_counted_locally_when_the_server_sends_no_usage(settings: Settings) -> None:
    completion = ask(settings, "[[no-usage]] +++ b/a.py")
    assert completion.prompt_tokens == len(["review"]) + len(["[[no-usage]]", "+++", "b/a.py"])


@pytest.mark.parametrize(
    ("marker", "error", "retry_after"),
    [
        ("[[429 m1]]", TransientModelError, 1.0),
        ("[[500 m2]]", TransientModelError, 1.0),
        ("[[400]]", PermanentModelError, None),
    ],
)
def test_provider_errors_are_mapped_once(
    settings: Settings, marker: str, error: type, retry_after: float | None
) -> None:
    with pytest.raises(error) as info:
        ask(settings, marker)
    if retry_after is not None:
        assert info.value.retry_after_s == retry_after


def test_timeout_is_transient(settings: Settings) -> None:
    with pytest.raises(TransientModelError, match="timeout"):
        ask(settings, "[[slow]]")


def test_malformed_structured_answer_gets_one_repair_then_is_permanent(
    settings: Settings, fake_openai: FakeOpenAI
) -> None:
    repaired = ask(settings, "[[malformed fix1]] +++ b/a.py")
    ReviewOutput.model_validate_json(repaired.text)
    attempts = fake_openai.about("[[malformed fix1]]")
    assert len(attempts) == 2 and "not valid: not JSON" in attempts[1]["body"]["messages"][-1]["content"]
    with pytest.raises(PermanentModelError, match="still invalid after repair"):
        ask(settings, "[[malformed-always]]")


@pytest.mark.usefixtures("worker")
def test_role_on_the_openai_backend_runs_end_to_end_and_honours_retry_after(
    client: redis.Redis, fake_openai: FakeOpenAI
) -> None:
    wf = Workflow(name="llm", steps=[Step(name="review", agent="reviewer_llm")])
    run = start(wf, input={"diff": SAMPLE_DIFF + "\n[[429 e2e]]"})
    results = run.wait(timeout=60)
    assert {f["rule"] for f in results["review"]["findings"]} >= {"hardcoded-secret", "bare-except"}
    retried = [e for e in run.events() if e.type == "step_retrying"]
    assert len(retried) == 1 and float(retried[0].fields["delay_s"]) >= 1.0  # Retry-After is a floor
    step = run.timings().steps[0]
    assert step.attempts == 2 and step.prompt_tokens == 123 and step.model == "fake-model"


@pytest.mark.usefixtures("worker")
def test_permanent_model_error_escalates_without_retries(client: redis.Redis) -> None:
    wf = Workflow(name="llm", steps=[Step(name="review", agent="reviewer_llm", retry=RetryPolicy(max_attempts=3))])
    run = start(wf, input={"diff": "[[malformed-always]]"})
    with pytest.raises(RunNeedsAttentionError, match="PermanentModelError"):
        run.wait(timeout=60)
    assert run.timings().steps[0].attempts == 1


LIMIT_SCRIPT = """
import sys, time, redis
from proj.ratelimit import RateLimit, RateLimiter
from proj.registry import registry_for
client = redis.Redis.from_url(sys.argv[1])
limiter = RateLimiter(client, sys.argv[2], RateLimit(requests=10, tokens=None, window_s=1.0))
end = time.time() + 3
while time.time() < end:
    client.rpush(sys.argv[2] + ':admitted', limiter.admit()[1])
"""


def test_rate_limit_holds_across_many_processes_and_threads(settings: Settings, client: redis.Redis) -> None:
    key = f"{settings.key_prefix}:ratelimit:test:{time.time_ns()}"
    procs = [
        subprocess.Popen([sys.executable, "-c", LIMIT_SCRIPT, settings.resolved_redis_url, key], cwd=ROOT)
        for _ in range(3)
    ]
    limiter = RateLimiter(client, key, RateLimit(requests=10, tokens=None, window_s=1.0))

    def hammer() -> None:
        end = time.time() + 3
        while time.time() < end:
            client.rpush(key + ":admitted", limiter.admit()[1])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    admitted = sorted(float(t) for t in client.lrange(key + ":admitted", 0, -1))
    assert len(admitted) >= 20  # the limit was reached, not just respected
    worst = max(sum(1 for t in admitted if start <= t < start + 1.0) for start in admitted)
    assert worst <= 10, f"{worst} calls within one 1 s window, limit 10"


def test_token_limit_counts_reservations(client: redis.Redis, settings: Settings) -> None:
    key = f"{settings.key_prefix}:ratelimit:tokens:{time.time_ns()}"
    limiter = RateLimiter(client, key, RateLimit(requests=None, tokens=1000, window_s=1.0))
    assert limiter.acquire(tokens=600) < 0.05
    waited = limiter.acquire(tokens=600)  # would exceed 1000 in the window: waits for the first
    assert 0.5 < waited < 1.5


@pytest.mark.usefixtures("worker")
def test_an_openai_role_streams_its_answer_to_the_runs_progress(
    client: redis.Redis, fake_openai: FakeOpenAI, settings: Settings
) -> None:
    marker = uuid.uuid4().hex
    wf = Workflow(name="llm_streamed", steps=[Step(name="review", agent="reviewer_llm")])
    run = start(wf, input={"diff": SAMPLE_DIFF, "case": marker})
    results = run.wait(timeout=60)
    sent = fake_openai.about(marker)[-1]["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    pieces = [e.fields["text"] for e in registry_for(settings).progress(run.id) if e.type == "tokens"]
    # The answer arrived in pieces (the fake sends 12 characters each), in order, and is the result.
    assert len(pieces) > 1 and json.loads("".join(pieces)) == results["review"]
    step = run.timings().steps[0]
    assert (step.prompt_tokens, step.completion_tokens, step.cached_tokens) == (123, 45, 100)  # the last chunk's usage
