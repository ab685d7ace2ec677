"""Hostile requests over real HTTP: each gets a 4xx that echoes nothing secret and changes nothing."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr, ValidationError

from coordinator import start
from coordinator.engine.notify import deliver
from coordinator.engine.webhooks import signed_request
from coordinator.interfaces.stack import ApiProcess
from proj.redaction import redact_url, url_host
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import WEBHOOK_SECRET
from tests.receiver import Receiver
from tests.test_approvals import bearer, gated

pytestmark = pytest.mark.usefixtures("worker")


def runs_now(settings: Settings) -> int:
    return int(registry_for(settings).client.zcard(registry_for(settings).keys.runs_index))


@pytest.mark.parametrize("name", ["/etc/hostname", "../../../../etc/hostname", "code_review/../code_review", "SECRET"])
def test_a_workflow_name_never_reads_a_file(
    name: str, settings: Settings, api: ApiProcess, client: redis.Redis, tmp_path: Path
) -> None:
    secret_file = tmp_path / "SECRET.yaml"
    secret_file.write_text("db_password: hunter2\n")
    before = runs_now(settings)
    for candidate in (name, str(secret_file.with_suffix("")), str(secret_file)):
        response = httpx.post(f"{api.url}/workflows", json={"workflow": candidate}, headers=bearer(), timeout=30)
        assert response.status_code == 404, response.text
        assert "db_password" not in response.text and "hunter2" not in response.text
        assert response.json()["type"] == "urn:agentchord:problem:unknown-workflow"
    assert runs_now(settings) == before


HOSTILE_BODIES = {
    "NaN": b'{"workflow": "triage", "input": {"x": NaN}}',
    "Infinity": b'{"workflow": "triage", "input": {"x": -Infinity}}',
    "1e400": b'{"workflow": "triage", "input": {"x": 1e400}}',
    "5000 levels": b'{"workflow": "triage", "input": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    "5000 digits": b'{"workflow": "triage", "input": {"x": ' + b"9" * 5000 + b"}}",
    "not UTF-8": b'{"workflow": "\xff"}',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
def test_hostile_json_gets_400_and_starts_nothing(
    kind: str, settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    before = runs_now(settings)
    headers = {**bearer(), "content-type": "application/json"}
    response = httpx.post(f"{api.url}/workflows", content=HOSTILE_BODIES[kind], headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "urn:agentchord:problem:malformed-body"
    assert runs_now(settings) == before


def test_hostile_json_in_a_decision_changes_nothing(settings: Settings, api: ApiProcess, client: redis.Redis) -> None:
    run = start(gated(name=f"hostile_{uuid.uuid4().hex[:6]}"), input={})
    approval = run.wait_for_approval(timeout=30)
    body = b'{"decision": "approve", "data": {"note": NaN}}'
    response = httpx.post(f"{api.url}/approvals/{approval.id}", content=body, headers=bearer(), timeout=30)
    assert response.status_code == 400, response.text
    assert run.approvals()[0].state == "pending" and run.status().state == "waiting_approval"


def test_a_signed_request_with_a_bad_body_does_not_spend_its_webhook_id(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(name=f"spend_{uuid.uuid4().hex[:6]}"), input={})
    approval = run.wait_for_approval(timeout=30)
    signing = settings.model_copy(update={"webhook_secrets": (SecretStr(WEBHOOK_SECRET),)})
    message_id = f"msg_{uuid.uuid4().hex}"
    bad, bad_headers = signed_request(signing, message_id, {"decision": "maybe"})
    response = httpx.post(f"{api.url}/approvals/{approval.id}", content=bad, headers=bad_headers, timeout=30)
    assert response.status_code == 422, response.text
    good, headers = signed_request(signing, message_id, {"decision": "approve", "data": {"note": "ok"}})
    accepted = httpx.post(f"{api.url}/approvals/{approval.id}", content=good, headers=headers, timeout=30)
    assert accepted.status_code == 200, accepted.text
    replay = httpx.post(f"{api.url}/approvals/{approval.id}", content=good, headers=headers, timeout=30)
    assert replay.status_code == 409 and replay.json()["type"] == "urn:agentchord:problem:replayed-webhook"


def test_urls_are_redacted_to_scheme_and_host() -> None:
    assert redact_url("https://user:pw@hooks.example:8443/T0KEN?key=s#frag") == "https://hooks.example:8443/…"
    assert redact_url("https://hooks.example/?key=s") == "https://hooks.example/…"
    assert redact_url("https://hooks.example") == "https://hooks.example/"
    assert url_host("http://user:pw@llm.local:8000/v1") == "llm.local:8000"


def test_planted_secrets_in_a_webhook_url_reach_neither_the_event_log_nor_the_logs(
    settings: Settings, receiver: Receiver, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    run = start(gated(name=f"planted_{uuid.uuid4().hex[:6]}"), input={})
    approval = run.wait_for_approval(timeout=30)
    port = httpx.URL(receiver.url).port
    planted = ("PLANTEDPASSWORD", "PLANTEDPATHTOKEN", "PLANTEDQUERY")
    url = f"http://hook-user:{planted[0]}@127.0.0.1:{port}/hooks/{planted[1]}?key={planted[2]}"
    with caplog.at_level(logging.DEBUG):
        assert deliver(registry_for(settings), approval.id, url, "approval.requested", 1) == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    stored = json.dumps([e.fields for e in run.events()])
    assert "notification_attempt" in {e.type for e in run.events()}
    for secret in planted:
        assert secret not in logged, secret
        assert secret not in stored, secret


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"$ref": "http://127.0.0.1:9/schema.json"}, "not local"),
        ({"properties": {"x": {"$ref": "file:///etc/hostname"}}}, "not local"),
        ({"properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}, "nests quantifiers"),
        ({"patternProperties": {"(\\w*)*x": {}}}, "nests quantifiers"),
        ({"type": "nonsense"}, "not a valid JSON Schema"),
    ],
)
def test_a_gate_schema_that_could_fetch_or_hang_is_refused_when_the_workflow_is_defined(
    schema: dict[str, object], why: str, settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    spec = {
        "name": "bad_gate",
        "steps": [{"name": "a", "agent": "echo"}, {"name": "g", "approval": {"schema": schema}, "after": ["a"]}],
    }
    before = runs_now(settings)
    response = httpx.post(f"{api.url}/workflows", json={"spec": spec}, headers=bearer(), timeout=30)
    assert response.status_code == 422, response.text
    assert why in response.text
    assert runs_now(settings) == before


def test_a_rejection_with_data_is_checked_against_the_gate_schema(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(name=f"reject_{uuid.uuid4().hex[:6]}"), input={})
    approval = run.wait_for_approval(timeout=30)
    bad = httpx.post(
        f"{api.url}/approvals/{approval.id}",
        json={"decision": "reject", "data": {"note": 12}},
        headers=bearer(),
        timeout=30,
    )
    assert bad.status_code == 422, bad.text
    assert run.approvals()[0].state == "pending"
    plain = httpx.post(f"{api.url}/approvals/{approval.id}", json={"decision": "reject"}, headers=bearer(), timeout=30)
    assert plain.status_code == 200, plain.text


def test_pending_approvals_page_by_cursor_oldest_first(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    ours = []
    for _ in range(3):
        run = start(gated(name=f"page_{uuid.uuid4().hex[:6]}"), input={})
        ours.append(run.wait_for_approval(timeout=30).id)
    seen: list[dict[str, object]] = []
    cursor: str | None = None
    for _ in range(20):
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api.url}/approvals", params=params, headers=bearer(), timeout=30)
        assert page.status_code == 200, page.text
        assert len(page.json()) <= 2
        seen += page.json()
        cursor = page.headers.get("x-next-cursor")
        if cursor is None:
            break
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)) and [i for i in ids if i in ours] == ours
    requested = [item["requested_at"] for item in seen]
    assert requested == sorted(requested)
    bad = httpx.get(f"{api.url}/approvals", params={"cursor": "nonsense"}, headers=bearer(), timeout=30)
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "cursor"]


def test_a_client_that_keeps_failing_authentication_gets_429(settings: Settings, client: redis.Redis) -> None:
    strict = settings.model_copy(update={"auth_failures_per_minute": 3})
    api = ApiProcess(strict).start().wait_ready()
    try:
        answers = []
        for _ in range(8):  # two minute windows at most: one of them sees a fourth failure
            bad = {"authorization": "Bearer wrong-token-0123456789"}
            answers.append(httpx.get(f"{api.url}/approvals", headers=bad, timeout=10).status_code)
            if answers[-1] == 429:
                break
        assert answers[-1] == 429 and answers[:3] == [401, 401, 401], answers
        assert set(answers) <= {401, 429}
    finally:
        api.stop()


def test_the_api_documents_can_be_turned_off(settings: Settings, client: redis.Redis) -> None:
    api = ApiProcess(settings.model_copy(update={"api_docs": False})).start().wait_ready()
    try:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{api.url}{path}", timeout=10).status_code == 404, path
        assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 200
    finally:
        api.stop()


def test_weak_credentials_are_refused_without_being_shown() -> None:
    with pytest.raises(ValidationError, match="AGENTCHORD_API_TOKENS: every entry needs at least 16") as caught:
        Settings(api_tokens="weak-token-1")
    assert "weak-token-1" not in str(caught.value)
    with pytest.raises(ValidationError, match="AGENTCHORD_WEBHOOK_SECRETS"):
        Settings(webhook_secrets="whsec_c2hvcnQ=")


def test_an_api_without_credentials_says_so(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    from coordinator.interfaces.api import create_app

    bare = settings.model_copy(update={"api_tokens": (), "webhook_secrets": ()})
    with caplog.at_level(logging.WARNING):
        create_app(bare)
    assert any("no credentials configured" in record.getMessage() for record in caplog.records)


READER = "reader-secret-0123456789"
ALICE = "alice-secret-0123456789"
BOB = "bob-secret-0123456789abc"


def test_tokens_have_names_and_scopes_and_a_gate_can_name_its_deciders(settings: Settings, client: redis.Redis) -> None:
    tokens = (f"reader:read:{READER}", f"alice:approve+read:{ALICE}", f"bob:approve:{BOB}")
    scoped = settings.model_copy(update={"api_tokens": tuple(SecretStr(t) for t in tokens)})
    api = ApiProcess(scoped).start().wait_ready()
    try:
        as_reader = {"authorization": f"Bearer {READER}"}
        refused = httpx.post(f"{api.url}/workflows", json={"workflow": "triage"}, headers=as_reader, timeout=30)
        assert refused.status_code == 403 and "start runs" in refused.json()["detail"]
        assert httpx.get(f"{api.url}/approvals", headers=as_reader, timeout=30).status_code == 200

        workflow = gated(name=f"deciders_{uuid.uuid4().hex[:6]}")
        gate_step = workflow.steps[1]
        assert gate_step.approval is not None
        only_alice = gate_step.model_copy(
            update={"approval": gate_step.approval.model_copy(update={"deciders": ["alice"]})}
        )
        workflow = workflow.model_copy(update={"steps": [workflow.steps[0], only_alice, workflow.steps[2]]})
        run = start(workflow, input={})
        approval = run.wait_for_approval(timeout=30)
        decision = {"decision": "approve", "data": {"note": "ok"}}
        url = f"{api.url}/approvals/{approval.id}"
        by_bob = httpx.post(url, json=decision, headers={"authorization": f"Bearer {BOB}"}, timeout=30)
        assert by_bob.status_code == 403, by_bob.text
        assert run.approvals()[0].state == "pending"
        by_reader = httpx.post(url, json=decision, headers=as_reader, timeout=30)
        assert by_reader.status_code == 403  # no approve scope
        by_alice = httpx.post(url, json=decision, headers={"authorization": f"Bearer {ALICE}"}, timeout=30)
        assert by_alice.status_code == 200, by_alice.text
        assert run.wait(timeout=60)["approve"]["decided_by"] == "alice"
    finally:
        api.stop()


def test_a_malformed_scoped_token_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="scopes from approve, operate, read, start"):
        Settings(api_tokens="ci:deploy:secret-0123456789abcdef")


def test_an_idempotency_key_reused_with_other_input_is_409_over_http(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    key = f"hook-{uuid.uuid4().hex[:8]}"
    body = {"workflow": "triage", "input": {"text": "crash"}, "idempotency_key": key}
    first = httpx.post(f"{api.url}/workflows", json=body, headers=bearer(), timeout=30)
    assert first.status_code == 202, first.text
    other = httpx.post(f"{api.url}/workflows", json={**body, "input": {"text": "other"}}, headers=bearer(), timeout=30)
    assert other.status_code == 409 and first.json()["run_id"] in other.json()["detail"]
    again = httpx.post(f"{api.url}/workflows", json=body, headers=bearer(), timeout=30)
    assert again.status_code == 202 and again.json()["run_id"] == first.json()["run_id"]
