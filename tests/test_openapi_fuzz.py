"""Schemathesis fuzzes the live API (real Redis, real workers) against its own OpenAPI document.

Every operation, with a valid token and without one, a fixed seed and a bounded number of
examples. Path ids are sometimes real (a parked approval, a finished run, a run that needs
attention and its failed step), so the routes' 200/409/410 answers are checked too, not only 404.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import redis
import schemathesis

from coordinator import Step, Workflow, start
from coordinator.interfaces.stack import ApiProcess
from proj.errors import RunNeedsAttentionError
from proj.settings import Settings
from tests.conftest import API_TOKEN
from tests.test_approvals import gated

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "unsupported_method",
]


def _served_document() -> dict[str, Any]:
    """The document the API serves, built in a child process: building the app configures the
    process's Celery app, which must not happen while tests are collected."""
    code = "import json; from coordinator.interfaces.api import create_app; print(json.dumps(create_app().openapi()))"
    env = {**os.environ, "AGENTCHORD_REDIS_URL": "redis://127.0.0.1:1/0", "AGENTCHORD_API_TOKENS": "x" * 20}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    document: dict[str, Any] = json.loads(out.stdout)
    return document


DOCUMENT = _served_document()
config = schemathesis.Config.from_dict(
    {
        "seed": 20261202,
        # Bounds the fuzzing phase; the coverage phase adds its own cases (about as many again).
        "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=config)

# Filled by the `real_ids` fixture before any case is drawn: path parameter -> ids that exist.
REAL_IDS: dict[str, list[str]] = {}


@schema.hook
def flatmap_path_parameters(ctx: schemathesis.HookContext, path_parameters: dict[str, Any] | None) -> Any:
    """Half the time, name a resource that exists (drawn by Hypothesis, so the seed decides)."""
    names = [name for name in path_parameters or {} if REAL_IDS.get(name)]
    if not names or path_parameters is None:
        return st.just(path_parameters)
    real = st.fixed_dictionaries({name: st.sampled_from(REAL_IDS[name]) for name in names})
    return st.one_of(st.just(path_parameters), real.map(lambda ids: {**path_parameters, **ids}))


@pytest.fixture(scope="module")
def real_ids(api: ApiProcess, worker: object, settings: Settings) -> Iterator[None]:
    served = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    assert served == DOCUMENT, "the fuzzed document differs from the one the API serves"
    parked = start(gated(name="fuzz_parked"), input={})
    approval = parked.wait_for_approval(timeout=30)
    finished = start(Workflow(name="fuzz_done", steps=[Step(name="a", agent="echo")]), input={})
    finished.wait(timeout=30)
    failing = start(Workflow(name="fuzz_attention", steps=[Step(name="fails", agent="boom")]), input={})
    with pytest.raises(RunNeedsAttentionError):
        failing.wait(timeout=30)
    REAL_IDS.update(
        run_id=[finished.id, failing.id, parked.id], approval_id=[approval.id], step=["fails", "a", "approve"]
    )
    yield
    # The fuzzer reached the real resources, not only 404s: one of its requests decided the parked
    # approval, or cancelled or aborted its run.
    decided = parked.approvals()[0].state != "pending"
    assert decided or parked.status().state in ("cancelled", "failed"), parked.status().state
    REAL_IDS.clear()
    client = redis.Redis.from_url(settings.resolved_redis_url)
    for key in client.scan_iter(f"{settings.key_prefix}:*", count=500):
        client.delete(key)
    client.close()


@schema.parametrize()
@pytest.mark.usefixtures("real_ids")
def test_api_with_a_token_answers_as_its_document_says(case: schemathesis.Case, api: ApiProcess) -> None:
    case.call_and_validate(base_url=api.url, headers={"Authorization": f"Bearer {API_TOKEN}"})


@schema.parametrize()
@pytest.mark.usefixtures("real_ids")
def test_api_without_credentials_refuses_and_answers_as_its_document_says(
    case: schemathesis.Case, api: ApiProcess
) -> None:
    response = case.call_and_validate(base_url=api.url)
    if case.operation.path not in ("/healthz", "/metrics"):
        # The coverage phase also sends other methods to each path: those get 405 (with Allow).
        expected = 401 if case.method.upper() == case.operation.method.upper() else 405
        assert response.status_code == expected, f"{case.method} {case.operation.path} answered {response.status_code}"
