"""The HTTP API's OpenAPI document is a contract: bodies, statuses, one error format, checks in order."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import redis

from coordinator import start
from coordinator.interfaces.stack import ApiProcess
from proj.errors import RunNotFoundError
from tests.test_approvals import bearer, gated

pytestmark = pytest.mark.usefixtures("worker")
PROBLEM = "application/problem+json"


def document(api: ApiProcess) -> dict[str, Any]:
    return httpx.get(f"{api.url}/openapi.json", timeout=10).json()


def test_every_post_declares_its_body_model_and_every_ref_resolves(api: ApiProcess) -> None:
    doc = document(api)
    bodies = {
        (path, method): operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    assert bodies == {
        ("/workflows", "post"): "StartRequest",
        ("/workflows/{run_id}/steps/{step}/skip", "post"): "SkipRequest",
        ("/workflows/{run_id}/abort", "post"): "AbortRequest",
        ("/workflows/{run_id}/rerun", "post"): "RerunRequest",
        ("/approvals/{approval_id}", "post"): "ResumeRequest",
    }
    schemas = doc["components"]["schemas"]
    assert schemas["StartRequest"]["examples"] and schemas["ResumeRequest"]["properties"]["decision"]["enum"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', httpx.get(f"{api.url}/openapi.json").text))
    assert refs <= set(schemas), refs - set(schemas)


def test_every_error_status_is_declared_as_a_problem(api: ApiProcess) -> None:
    for path, operations in document(api)["paths"].items():
        for method, operation in operations.items():
            errors = {code: r for code, r in operation["responses"].items() if code.startswith(("4", "5"))}
            assert "503" in errors, (method, path)
            if path not in ("/healthz", "/metrics"):
                assert {"401", "403", "413", "429"} <= set(errors), (method, path)
                assert operation["security"], (method, path)
            for code, response in errors.items():
                assert list(response["content"]) == [PROBLEM], (method, path, code)
                assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_unknown_ids_get_404_whatever_the_body_and_no_credentials_get_401_first(
    api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(), input={})
    run.wait_for_approval(timeout=30)
    garbage = b"{not json"
    cases = [
        ("post", "/approvals/nope.gate", b""),
        ("post", "/approvals/nope.gate", garbage),
        ("post", f"/approvals/{run.id}.no_such_gate", b'{"decision": "maybe"}'),
        ("post", "/workflows/nope/steps/a/skip", garbage),
        ("post", f"/workflows/{run.id}/steps/no_such_step/skip", garbage),
        ("post", f"/workflows/{run.id}/steps/no_such_step/retry", b""),
        ("post", "/workflows/nope/abort", garbage),
        ("post", "/workflows/nope/cancel", b""),
        ("get", "/workflows/nope", b""),
        ("get", "/approvals/no-dot-in-it", b""),
    ]
    for method, path, body in cases:
        found = httpx.request(method, f"{api.url}{path}", content=body, headers=bearer(), timeout=10)
        assert found.status_code == 404, (path, body, found.text)
        assert found.headers["content-type"] == PROBLEM
        problem = found.json()
        assert problem["status"] == 404 and problem["type"].startswith("urn:agentchord:problem:") and problem["detail"]
        anonymous = httpx.request(method, f"{api.url}{path}", content=body, timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["type"] == "urn:agentchord:problem:authentication"
    # The run was not touched by any of it.
    assert run.approvals()[0].state == "pending"


def test_problem_types_are_the_python_exceptions_names(api: ApiProcess) -> None:
    missing = httpx.get(f"{api.url}/workflows/nope", headers=bearer(), timeout=10).json()
    assert missing == {
        "type": RunNotFoundError.problem_type(),
        "title": "Run not found",
        "status": 404,
        "detail": str(RunNotFoundError("nope")),
    }


def test_validation_errors_list_each_field_as_a_problem(api: ApiProcess, client: redis.Redis) -> None:
    body = httpx.post(
        f"{api.url}/workflows", json={"workflow": 3, "input": [], "extra": 1}, headers=bearer(), timeout=10
    )
    assert body.status_code == 422 and body.headers["content-type"] == PROBLEM
    locations = {tuple(error["loc"]) for error in body.json()["errors"]}
    assert {("body", "workflow"), ("body", "input"), ("body", "extra")} <= locations
    query = httpx.get(f"{api.url}/approvals", params={"limit": 0}, headers=bearer(), timeout=10)
    assert query.status_code == 422 and query.json()["errors"][0]["loc"] == ["query", "limit"]
    # FastAPI's own answers (an unknown route, a wrong method) are problems too.
    unknown = httpx.get(f"{api.url}/no/such/route", timeout=10)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
    wrong_method = httpx.delete(f"{api.url}/workflows", headers=bearer(), timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["title"] == "Method Not Allowed"
    assert "allow" in wrong_method.headers


def test_an_approval_conflict_names_the_decision_that_won(api: ApiProcess, client: redis.Redis) -> None:
    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    decision = {"decision": "approve", "data": {"note": "ok"}}
    first = httpx.post(f"{api.url}/approvals/{approval.id}", json=decision, headers=bearer(), timeout=10)
    assert first.status_code == 200, first.text
    second = httpx.post(f"{api.url}/approvals/{approval.id}", json={"decision": "reject"}, headers=bearer(), timeout=10)
    assert second.status_code == 409 and second.headers["content-type"] == PROBLEM
    assert second.json()["decision"] == "approve" and second.json()["type"].endswith(":approval-conflict")


def test_docs_and_redoc_load_every_asset_from_the_api_itself(api: ApiProcess) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{api.url}{page}", timeout=10).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
        assert sources, page
        for source in sources:
            assert source.startswith("/"), f"{page} loads {source} from another host"
            asset = httpx.get(f"{api.url}{source}", timeout=10)
            assert asset.status_code == 200 and len(asset.content) > 0, source
    spec_url = re.search(r'spec-url="([^"]+)"', httpx.get(f"{api.url}/redoc", timeout=10).text)
    assert spec_url is not None and spec_url.group(1) == "/openapi.json"
