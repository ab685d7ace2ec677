"""Human approval: park, resume through the real HTTP API, deadlines, notifications."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr
from standardwebhooks import Webhook

from coordinator import Approval, Step, Workflow, get_run, start
from coordinator.engine.approvals import sweep_deadlines
from coordinator.engine.webhooks import signed_request
from coordinator.interfaces.stack import ApiProcess, WorkerProcess
from proj.errors import ApprovalClosedError, ApprovalConflictError, ApprovalDataError, RunFailedError
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import API_TOKEN, OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, wait_for
from tests.receiver import Receiver

pytestmark = pytest.mark.usefixtures("worker")

NOTE_SCHEMA = {
    "type": "object",
    "properties": {"note": {"type": "string"}},
    "required": ["note"],
    "additionalProperties": False,
}


def gated(name: str = "gated", **gate: Any) -> Workflow:
    """before -> approve (gate) -> after."""
    return Workflow(
        name=name,
        steps=[
            Step(name="before", agent="echo"),
            Step(name="approve", approval=Approval(prompt="Ship it?", schema=NOTE_SCHEMA, **gate), after=["before"]),
            Step(name="after", agent="echo", after=["approve"]),
        ],
    )


def signed(settings: Settings, payload: Any, *, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    return signed_request(
        settings.model_copy(update={"webhook_secrets": (SecretStr(secret),)}), f"msg_{uuid.uuid4().hex}", payload
    )


def post_resume(api: ApiProcess, settings: Settings, approval_id: str, payload: Any) -> httpx.Response:
    body, headers = signed(settings, payload)
    return httpx.post(f"{api.url}/approvals/{approval_id}", content=body, headers=headers, timeout=30)


def bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {API_TOKEN}"}


def test_gate_parks_the_run_and_a_signed_webhook_resumes_it(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(), input={"pr": 7})
    approval = run.wait_for_approval(timeout=30)
    assert run.status().state == "waiting_approval"
    assert approval.context == {"before": {"step": "before", "saw": [], "input_keys": ["pr"]}}
    assert approval.resume_url == f"{settings.public_url}/approvals/{approval.id}"

    listed = httpx.get(f"{api.url}/approvals", headers=bearer(), timeout=10).json()
    assert approval.id in [item["id"] for item in listed]

    response = post_resume(
        api, settings, approval.id, {"decision": "approve", "comment": "lgtm", "data": {"note": "ok"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "approved"
    results = run.wait(timeout=30)
    assert results["approve"] == {
        "decision": "approve",
        "comment": "lgtm",
        "data": {"note": "ok"},
        "decided_by": response.json()["actor"],
    }
    assert results["after"]["saw"] == ["approve"]
    steps = run.status().steps
    assert steps["before"].body_runs == 1 and steps["after"].body_runs == 1


def test_parked_run_survives_restart_of_every_worker_and_the_api(
    settings: Settings, api: ApiProcess, worker: WorkerProcess, client: redis.Redis
) -> None:
    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    worker.stop()
    api.stop()
    assert run.status().state == "waiting_approval"  # nothing holds the run but Redis
    worker.start().wait_ready()
    api.start().wait_ready()
    response = post_resume(api, settings, approval.id, {"decision": "approve", "data": {"note": "after restart"}})
    assert response.status_code == 200, response.text
    run.wait(timeout=30)
    assert run.status().steps["before"].body_runs == 1  # steps before the gate never run again


def test_fifty_concurrent_resumes_make_exactly_one_transition(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    payloads = [
        {"decision": "approve" if i % 2 else "reject", "data": {"note": f"reviewer {i}"}, "comment": f"#{i}"}
        for i in range(50)
    ]
    requests = [signed(settings, payload) for payload in payloads]
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(max_workers=50) as pool:
        url = f"{api.url}/approvals/{approval.id}"
        responses = list(pool.map(lambda req: http.post(url, content=req[0], headers=req[1]), requests))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 1 and codes.count(409) == 49, codes
    winner = next(r.json() for r in responses if r.status_code == 200)["decision"]
    assert {r.json()["decision"] for r in responses if r.status_code == 409} == {winner}
    if winner == "approve":
        run.wait(timeout=30)
    else:
        with pytest.raises(RunFailedError, match="ended rejected"):
            run.wait(timeout=30)
    decided = [e for e in run.events() if e.type == "approval_decided"]
    dispatched_after = [e for e in run.events() if e.type == "step_dispatched" and e.fields.get("step") == "after"]
    assert len(decided) == 1
    assert len(dispatched_after) == (1 if winner == "approve" else 0)
    assert run.status().steps["after"].body_runs == (1 if winner == "approve" else 0)


def event_count(run_id: str) -> int:
    """Events that change the run (notification attempts are logged asynchronously)."""
    return len([e for e in get_run(run_id).events() if not e.type.startswith("notification")])


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("malformed JSON", 400),
        ("decision of the wrong type", 422),
        ("unknown decision", 422),
        ("unknown field", 422),
        ("data failing the schema", 422),
        ("no credentials", 401),
        ("wrong bearer token", 401),
        ("signature by an unknown secret", 401),
        ("tampered body", 401),
        ("expired timestamp", 401),
        ("malformed signature header", 401),
        ("oversized body", 413),
        ("unknown approval", 404),
    ],
)
def test_bad_resume_requests_get_a_precise_4xx_and_change_nothing(
    case: str, expected: int, settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    before = event_count(run.id)
    url = f"{api.url}/approvals/{approval.id}"
    good = {"decision": "approve", "data": {"note": "x"}}
    body, headers = signed(settings, good)
    if case == "malformed JSON":
        body, headers = _sign_raw(settings, b'{"decision": "approve",')
    elif case == "decision of the wrong type":
        body, headers = signed(settings, {"decision": 5})
    elif case == "unknown decision":
        body, headers = signed(settings, {"decision": "maybe"})
    elif case == "unknown field":
        body, headers = signed(settings, {"decision": "approve", "data": {"note": "x"}, "admin": True})
    elif case == "data failing the schema":
        body, headers = signed(settings, {"decision": "approve", "data": {"note": 3, "extra": 1}})
    elif case == "no credentials":
        headers = {"content-type": "application/json"}
    elif case == "wrong bearer token":
        headers = {"authorization": "Bearer nope"}
    elif case == "signature by an unknown secret":
        body, headers = signed(settings, good, secret="whsec_" + "A" * 40)
    elif case == "tampered body":
        body = body.replace(b'"x"', b'"y"')
    elif case == "expired timestamp":
        headers = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    elif case == "malformed signature header":
        headers = {**headers, "webhook-signature": "garbage-without-comma"}
    elif case == "oversized body":
        body, headers = signed(settings, {"decision": "approve", "comment": "x" * settings.max_body_bytes})
    elif case == "unknown approval":
        url = f"{api.url}/approvals/{run.id}.nope"
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    assert response.status_code == expected, response.text
    assert response.json()["detail"]
    if case == "data failing the schema":
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"] == [
            {
                "loc": ["data"],
                "msg": "Additional properties are not allowed ('extra' was unexpected)",
                "type": "json_schema.additionalProperties",
            },
            {"loc": ["data", "note"], "msg": "3 is not of type 'string'", "type": "json_schema.type"},
        ]
    assert get_run(run.id).approvals()[0].state == "pending"
    assert event_count(run.id) == before


def _sign_raw(settings: Settings, raw: bytes) -> tuple[bytes, dict[str, str]]:
    _, headers = signed(settings, {})
    from datetime import UTC, datetime

    msg_id = headers["webhook-id"]
    now = datetime.now(tz=UTC)
    headers["webhook-timestamp"] = str(int(now.timestamp()))
    headers["webhook-signature"] = Webhook(WEBHOOK_SECRET).sign(msg_id, now, raw.decode())
    return raw, headers


def test_replayed_webhook_and_second_decision_get_409_decided_or_closed_changes_nothing(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    body, headers = signed(settings, {"decision": "reject", "comment": "no"})
    first = httpx.post(f"{api.url}/approvals/{approval.id}", content=body, headers=headers, timeout=30)
    assert first.status_code == 200
    replay = httpx.post(f"{api.url}/approvals/{approval.id}", content=body, headers=headers, timeout=30)
    assert replay.status_code == 409 and replay.json()["type"] == "urn:agentchord:problem:replayed-webhook"
    again = post_resume(api, settings, approval.id, {"decision": "approve", "data": {"note": "late"}})
    assert again.status_code == 409 and again.json()["decision"] == "reject"
    with pytest.raises(ApprovalConflictError, match="'reject' won"):
        run.approve(data={"note": "python"})
    assert run.status().state == "rejected"

    cancelled = start(gated(), input={})
    gate = cancelled.wait_for_approval(timeout=30)
    assert cancelled.cancel()
    closed = post_resume(api, settings, gate.id, {"decision": "approve", "data": {"note": "x"}})
    assert closed.status_code == 410 and "run cancelled" in closed.json()["detail"]
    with pytest.raises(ApprovalClosedError):
        cancelled.reject()
    assert cancelled.status().state == "cancelled"


def test_old_secret_still_verifies_during_rotation_and_bearer_token_works(
    settings: Settings, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    body, headers = signed(settings, {"decision": "approve", "data": {"note": "old key"}}, secret=OLD_WEBHOOK_SECRET)
    assert httpx.post(f"{api.url}/approvals/{approval.id}", content=body, headers=headers).status_code == 200
    status = httpx.get(f"{api.url}/workflows/{run.id}", headers=bearer(), timeout=10)
    assert status.status_code == 200 and status.json()["approvals"][0]["state"] == "approved"


def test_python_api_validates_data_and_reject_ends_the_run(settings: Settings, client: redis.Redis) -> None:
    run = start(gated(), input={})
    run.wait_for_approval(timeout=30)
    with pytest.raises(ApprovalDataError, match="'note' is a required property"):
        run.approve(data={})
    view = run.reject(comment="not now")
    assert view.state == "rejected" and view.actor == "python"
    with pytest.raises(RunFailedError, match="rejected at approve by python"):
        run.wait(timeout=30)
    after = run.status().steps["after"]
    assert after.state == "skipped" and after.body_runs == 0


def test_on_reject_branch_runs_instead_of_the_approved_path(settings: Settings, client: redis.Redis) -> None:
    wf = Workflow(
        name="branch",
        steps=[
            Step(name="draft", agent="echo"),
            Step(name="gate", approval=Approval(on_reject="fix"), after=["draft"]),
            Step(name="ship", agent="echo", after=["gate"]),
            Step(name="fix", agent="echo", after=["gate"]),
            Step(name="announce", agent="echo", after=["ship"]),
        ],
    )
    rejected = start(wf, input={})
    rejected.wait_for_approval(timeout=30)
    rejected.reject(comment="needs work")
    results = rejected.wait(timeout=30)
    assert set(results) == {"draft", "gate", "fix"}
    steps = rejected.status().steps
    assert steps["ship"].state == "skipped" and steps["announce"].state == "skipped"

    approved = start(wf, input={})
    approved.wait_for_approval(timeout=30)
    approved.approve()
    assert set(approved.wait(timeout=30)) == {"draft", "gate", "ship", "announce"}
    assert approved.status().steps["fix"].state == "skipped"


@pytest.mark.parametrize("action", ["reject", "approve", "escalate"])
def test_deadline_fires_its_action_exactly_once_with_many_sweepers(
    action: str, settings: Settings, receiver: Receiver, client: redis.Redis
) -> None:
    wf = gated(name=f"deadline_{action}", timeout_s=60, on_timeout=action)
    wf = wf.model_copy(update={"steps": [wf.steps[0], _without_schema(wf.steps[1]), wf.steps[2]]})
    run = start(wf, input={})
    approval = run.wait_for_approval(timeout=30)
    registry = registry_for(settings)
    assert sweep_deadlines(registry, now=approval.requested_at + 59) == []  # not due yet
    later = approval.requested_at + 61
    with ThreadPoolExecutor(max_workers=5) as pool:
        fired = [item for batch in pool.map(lambda _: sweep_deadlines(registry, now=later), range(5)) for item in batch]
    assert fired == [(approval.id, action)]
    types = [e.type for e in run.events()]
    if action == "escalate":
        assert types.count("approval_escalated") == 1
        view = run.approvals()[0]
        assert view.state == "pending" and view.escalated and view.deadline is not None
        wait_for(lambda: any(b"approval.escalated" in r.body for r in receiver.about(approval.id)))
        run.approve()  # a human can still decide after an escalation
        run.wait(timeout=30)
    else:
        assert types.count("approval_decided") == 1
        assert run.approvals()[0].actor == "deadline"
        if action == "approve":
            assert "after" in run.wait(timeout=30)
        else:
            with pytest.raises(RunFailedError, match="ended rejected"):
                run.wait(timeout=30)


def _without_schema(step: Step) -> Step:
    assert step.approval is not None
    return step.model_copy(update={"approval": step.approval.model_copy(update={"data_schema": None})})


def test_notification_is_signed_retried_after_a_500_and_logged(
    settings: Settings, receiver: Receiver, client: redis.Redis
) -> None:
    name = f"notify_{uuid.uuid4().hex[:8]}"
    receiver.fail_next(name, times=1)
    run = start(gated(name=name), input={})
    approval = run.wait_for_approval(timeout=30)
    delivered = wait_for(lambda: [r for r in receiver.about(approval.id) if r.answered == 200])
    attempts = receiver.about(approval.id)
    assert [r.answered for r in attempts] == [500, 200]
    assert len({r.headers["webhook-id"] for r in attempts}) == 1  # same message id on retry
    payload = Webhook(WEBHOOK_SECRET).verify(delivered[0].body, delivered[0].headers)
    assert payload["type"] == "approval.requested"
    assert payload["resume_url"] == approval.resume_url
    assert payload["context_summary"]["before"].startswith('{"step": "before"')
    wait_for(lambda: any(e.type == "notification_delivered" for e in run.events()))
    logged = [(e.type, e.fields.get("status")) for e in run.events() if e.type.startswith("notification")]
    assert logged == [
        ("notification_attempt", "500"),
        ("notification_attempt", "200"),
        ("notification_delivered", "200"),
    ]
    assert all("/hooks" not in (e.fields.get("url") or "") for e in run.events())  # URL path redacted


def test_start_and_status_over_http(settings: Settings, api: ApiProcess, client: redis.Redis) -> None:
    response = httpx.post(
        f"{api.url}/workflows", json={"workflow": "triage", "input": {"text": "crash"}}, headers=bearer(), timeout=30
    )
    assert response.status_code == 202, response.text
    run = get_run(response.json()["run_id"])
    run.wait(timeout=30)
    status = httpx.get(response.json()["status_url"], headers=bearer(), timeout=10).json()
    assert status["status"]["state"] == "succeeded"
    unknown = httpx.post(f"{api.url}/workflows", json={"workflow": "nope"}, headers=bearer())
    assert unknown.status_code == 404
    bad_agent = {"spec": {"name": "w", "steps": [{"name": "a", "agent": "reviwer"}]}}
    invalid = httpx.post(f"{api.url}/workflows", json=bad_agent, headers=bearer())
    assert invalid.status_code == 422 and "unknown agent 'reviwer'" in invalid.json()["detail"]
    assert httpx.get(f"{api.url}/workflows/nope", headers=bearer()).status_code == 404
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    assert "/approvals/{approval_id}" in httpx.get(f"{api.url}/openapi.json").json()["paths"]


def test_cli_lists_and_approves(settings: Settings, client: redis.Redis) -> None:
    from tests.test_cli import agentchord

    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    listed = agentchord(settings, "approvals")
    assert approval.id in listed.stdout
    bad = agentchord(settings, "approve", run.id, "--data", json.dumps({"note": 1}))
    assert bad.returncode == 2 and "fails the gate's schema" in bad.stdout
    done = agentchord(settings, "approve", run.id, "--data", json.dumps({"note": "cli"}), "--comment", "ok")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{approval.id}: approved" in done.stdout
    run.wait(timeout=30)
