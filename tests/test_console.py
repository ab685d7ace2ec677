"""The web console at /ui, in a real browser (Debian's Chromium through Playwright) and over HTTP:
login, the inbox, a decision through the one resume path, the run page following the run live,
escaping, CSRF, and the event stream resumed with Last-Event-ID."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from coordinator import Approval, Step, Workflow, get_run, start
from coordinator.interfaces.stack import ApiProcess
from proj.registry import registry_for
from proj.settings import Settings
from tests.conftest import API_TOKEN, wait_for
from tests.receiver import Receiver
from tests.test_approvals import NOTE_SCHEMA, bearer, gated

pytestmark = pytest.mark.usefixtures("worker")
DOCS = Path(__file__).resolve().parent.parent / "docs"


def logged_in(browser: Browser, api: ApiProcess) -> Page:
    page = browser.new_context(base_url=api.url, viewport={"width": 1280, "height": 900}).new_page()
    page.goto("/ui/approvals")
    expect(page).to_have_url(f"{api.url}/ui/login?next=/ui/approvals")  # no data without a login
    page.fill("input[name=token]", API_TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Pending approvals")
    return page


def slow_gated(name: str) -> Workflow:
    """draft -> approve (gate, note required) -> publish (takes a second: the page sees it run)."""
    return Workflow(
        name=name,
        steps=[
            Step(name="draft", agent="echo"),
            Step(name="approve", approval=Approval(prompt=f"Publish {name}?", schema=NOTE_SCHEMA), after=["draft"]),
            Step(name="publish", agent="echo", after=["approve"], params={"sleep_s": 1.0}),
        ],
    )


def test_nothing_without_a_login(api: ApiProcess, client: redis.Redis) -> None:
    run = start(gated(), input={})
    approval = run.wait_for_approval(timeout=30)
    for path in ("/ui/approvals", f"/ui/approvals/{approval.id}", "/ui/runs", f"/ui/runs/{run.id}"):
        page = httpx.get(f"{api.url}{path}", headers={"accept": "text/html"}, timeout=10)
        assert page.status_code == 303 and page.headers["location"].startswith("/ui/login"), path
        assert run.id not in page.text
    assert httpx.get(f"{api.url}/ui/runs/{run.id}/events", timeout=10).status_code == 401
    forged = httpx.get(f"{api.url}/ui/runs", cookies={"agentchord_session": "forged.cookie"}, timeout=10)
    assert forged.status_code == 401
    refused = httpx.post(f"{api.url}/ui/login", data={"token": "wrong-token-value-123"}, timeout=10)
    assert refused.status_code == 401 and "set-cookie" not in refused.headers


def test_approve_from_the_inbox_and_watch_the_run_finish_live(
    browser: Browser, api: ApiProcess, client: redis.Redis
) -> None:
    run = start(slow_gated("release_notes"), input={"text": "v1.2"})
    approval = run.wait_for_approval(timeout=30)
    page = logged_in(browser, api)
    row = page.locator("#inbox tr", has_text="Publish release_notes?")
    expect(row).to_contain_text(run.id)
    page.screenshot(path=str(DOCS / "console-inbox.png"))
    row.get_by_role("link", name="Publish release_notes?").click()
    expect(page.locator("h1")).to_have_text("Publish release_notes?")
    # An invalid form (the schema requires a note) shows the schema's error and changes nothing.
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("'note' is a required property")
    assert get_run(run.id).approvals()[0].state == "pending"
    page.fill("input[name=field_note]", "ship it")
    page.screenshot(path=str(DOCS / "console-approval.png"))
    page.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(f"{api.url}/ui/runs/{run.id}")
    page.evaluate("window.__stayed = true")  # gone if the page reloads
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=30_000)
    expect(page.locator("#events")).to_contain_text("run_finished")
    assert page.evaluate("window.__stayed") is True  # updated live, never reloaded
    # Each event once: the stream starts after the last event the page was rendered with.
    logged = page.locator("#events li code").all_inner_texts()
    assert logged.count("run_started") == 1 and logged.count("run_finished") == 1 and "approval_decided" in logged
    expect(page.locator("form.actions")).to_have_count(0)  # nothing to cancel any more
    # The DAG colours each step by its state; the timeline has a bar per step that ran.
    expect(page.locator("svg.dag g.node[data-step=publish]")).to_have_attribute("data-state", "succeeded")
    assert page.locator("figure.gantt svg rect").count() >= 3
    page.screenshot(path=str(DOCS / "console-run.png"), full_page=True)
    decided = get_run(run.id).approvals()[0]
    assert (decided.decision, decided.data, decided.actor) == ("approve", {"note": "ship it"}, "token")
    assert approval.id == decided.id


def test_two_reviewers_one_wins_and_the_other_sees_who(browser: Browser, api: ApiProcess, client: redis.Redis) -> None:
    run = start(gated(name="contested"), input={})
    approval = run.wait_for_approval(timeout=30)
    first, second = logged_in(browser, api), logged_in(browser, api)
    for page in (first, second):
        page.goto(f"/ui/approvals/{approval.id}")
    first.fill("input[name=field_note]", "mine")
    first.get_by_role("button", name="Approve").click()
    expect(first).to_have_url(f"{api.url}/ui/runs/{run.id}")
    second.get_by_role("button", name="Reject").click()
    expect(second.get_by_role("status")).to_contain_text("Someone decided first: approve by token")
    run.wait(timeout=30)
    assert get_run(run.id).approvals()[0].decision == "approve"


def test_an_output_with_markup_stays_text(browser: Browser, api: ApiProcess, client: redis.Redis) -> None:
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    run = start(Workflow(name="xss", steps=[Step(name="echoed", agent="echo")]), input={payload: 1})
    run.wait(timeout=30)
    page = logged_in(browser, api)
    page.goto(f"/ui/runs/{run.id}")
    expect(page.locator("#steps")).to_contain_text("<script>window.__pwned=2</script>")  # shown, as text
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("#steps img").count() == 0 and page.locator("#steps script").count() == 0


def test_a_form_posted_from_another_origin_or_without_its_token_is_refused(
    api: ApiProcess, client: redis.Redis
) -> None:
    run = start(gated(name="csrf"), input={})
    approval = run.wait_for_approval(timeout=30)
    with httpx.Client(base_url=api.url, timeout=10) as session:
        assert session.post("/ui/login", data={"token": API_TOKEN}).status_code == 303
        form = session.get(f"/ui/approvals/{approval.id}").text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        decision = {"decision": "approve", "field_note": "forged"}
        missing = session.post(f"/ui/approvals/{approval.id}", data=decision)
        other_origin = session.post(
            f"/ui/approvals/{approval.id}", data={**decision, "csrf": csrf}, headers={"origin": "http://evil.example"}
        )
        assert missing.status_code == 403 and other_origin.status_code == 403
    assert get_run(run.id).approvals()[0].state == "pending"


def events_of(api: ApiProcess, run_id: str, last_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    headers = {**bearer(), **({"last-event-id": last_id} if last_id else {})}
    received: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", f"{api.url}/workflows/{run_id}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        event_id = ""
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                received.append((event_id, json.loads(line[6:])))
    return received


def test_the_event_stream_resumes_after_the_last_event_id(api: ApiProcess, client: redis.Redis) -> None:
    run = start(
        Workflow(name="streamed", steps=[Step(name="a", agent="echo"), Step(name="b", agent="echo", after=["a"])]),
        input={},
    )
    run.wait(timeout=30)
    everything = events_of(api, run.id)
    types = [data["type"] for _, data in everything]
    assert types[0] == "run_started" and types[-1] == "run_finished" and types.count("step_finished") == 2
    # A client that saw the first three reconnects: it gets the rest, nothing twice.
    resumed = events_of(api, run.id, last_id=everything[2][0])
    assert resumed == everything[3:]
    assert events_of(api, run.id, last_id=everything[-1][0]) == []
    assert httpx.get(f"{api.url}/workflows/nope/events", headers=bearer(), timeout=10).status_code == 404


def test_a_parked_run_streams_until_the_decision_then_to_its_end(api: ApiProcess, client: redis.Redis) -> None:
    run = start(gated(name="followed"), input={})
    approval = run.wait_for_approval(timeout=30)
    before = events_of(api, run.id)  # the stream closes after AGENTCHORD_SSE_MAX_S (2 s in the tests)
    assert "run_finished" not in [data["type"] for _, data in before]
    run.approve(data={"note": "ok"})
    run.wait(timeout=30)
    after = wait_for(lambda: events_of(api, run.id, last_id=before[-1][0]))
    assert after[-1][1]["type"] == "run_finished" and not {i for i, _ in after} & {i for i, _ in before}
    assert approval.id


def test_an_agents_progress_and_streamed_tokens_show_before_its_step_ends(
    browser: Browser, api: ApiProcess, client: redis.Redis, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run = start(
        Workflow(name="streaming", steps=[Step(name="talk", agent="streamer", params={"path": str(release)})]),
        input={},
    )
    page = logged_in(browser, api)
    page.goto(f"/ui/runs/{run.id}")
    progress = page.locator("tr.progress[data-step=talk]")
    # The streamer holds its step open until `release` exists: all this arrives while it runs.
    expect(progress.locator("em.message")).to_have_text("answer received", timeout=30_000)
    expect(progress.locator("pre.stream")).to_contain_text('"words": 40}')
    assert get_run(run.id).status().steps["talk"].state == "running"
    # The model's answer arrived in pieces, in order, on the same stream the API serves.
    streamed = [data["text"] for _, data in events_of(api, run.id) if data["type"] == "tokens"]
    answer = json.dumps({"summary": " ".join(["token"] * 30), "words": 40}, sort_keys=True)  # the offline model's
    assert len(streamed) > 1 and "".join(streamed) == answer
    page.screenshot(path=str(DOCS / "console-stream.png"), full_page=True)
    release.touch()
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=30_000)
    results = run.wait(timeout=30)
    assert "progress" not in json.dumps(results) and "answer received" not in json.dumps(results)


def test_runs_page_through_the_index_with_filters_and_a_run_is_found_by_its_key(
    api: ApiProcess, settings: Settings, client: redis.Redis
) -> None:
    registry = registry_for(settings)
    done = [start(Workflow(name="paged_ok", steps=[Step(name="a", agent="echo")]), input={"n": n}) for n in range(5)]
    failing = start(Workflow(name="paged_bad", steps=[Step(name="x", agent="boom")]), input={}, idempotency_key="pr-7")
    for run in done:
        run.wait(timeout=30)
    wait_for(lambda: failing.status().state == "needs_attention")
    # Newest first, two at a time, every run once.
    seen, cursor = [], None
    while True:
        rows, cursor = registry.runs_page(2, cursor)
        seen += [row["id"] for row in rows]
        if cursor is None:
            break
    assert seen == [failing.id, *[run.id for run in reversed(done)]]
    # A filter pages too; a scan bound stops a page early and says where to go on.
    rows, _ = registry.runs_page(10, None, state="succeeded", workflow="paged_ok")
    assert [row["id"] for row in rows] == [run.id for run in reversed(done)]
    partial, more = registry.runs_page(10, None, state="succeeded", scan=2)
    assert len(partial) == 1 and more is not None
    # The console: the filter, and a run found by its idempotency key.
    with httpx.Client(base_url=api.url, timeout=10) as browser_like:
        browser_like.post("/ui/login", data={"token": API_TOKEN})
        listed = browser_like.get("/ui/runs", params={"state": "needs_attention"}).text
        assert failing.id in listed and done[0].id not in listed
        found = browser_like.get("/ui/runs", params={"find": "pr-7"})
        assert found.status_code == 303 and found.headers["location"] == f"/ui/runs/{failing.id}"
        assert browser_like.get("/ui/runs", params={"find": "no-such-key"}).status_code == 404
        assert browser_like.get("/ui/runs", params={"cursor": "garbage|x"}).status_code == 400


def test_a_notifications_decision_link_decides_that_approval_once_without_a_login(
    api: ApiProcess, settings: Settings, receiver: Receiver, client: redis.Redis
) -> None:
    run = start(gated(name="linked"), input={})
    approval = run.wait_for_approval(timeout=30)
    delivered = wait_for(lambda: [r for r in receiver.about(approval.id) if b"approval.requested" in r.body])
    link = json.loads(delivered[0].body)["decide_url"]
    path = link.removeprefix(settings.public_url.rstrip("/"))
    assert path.startswith("/ui/decide/")
    with httpx.Client(base_url=api.url, timeout=10) as anonymous:  # no login, no token
        assert approval.prompt in anonymous.get(path).text
        invalid = anonymous.post(path, data={"decision": "approve"})  # the gate's schema wants a note
        assert invalid.status_code == 422 and "note" in invalid.text
        forged = anonymous.post(path[:-3] + "xyz", data={"decision": "approve", "field_note": "x"})
        assert forged.status_code == 410
        decided = anonymous.post(path, data={"decision": "approve", "field_note": "from the link"})
        assert decided.status_code == 200
        again = anonymous.post(path, data={"decision": "reject"})
        assert again.status_code == 410  # single use
        assert anonymous.get(path).status_code == 410
    view = get_run(run.id).approvals()[0]
    assert (view.decision, view.data, view.actor) == ("approve", {"note": "from the link"}, "decision-link")
    run.wait(timeout=30)


def test_an_operator_skips_a_failed_step_from_its_run_page(
    browser: Browser, api: ApiProcess, client: redis.Redis
) -> None:
    steps = [Step(name="fails", agent="boom"), Step(name="after", agent="echo", after=["fails"])]
    run = start(Workflow(name="skipped_in_console", steps=steps), input={})
    wait_for(lambda: run.status().state == "needs_attention")
    page = logged_in(browser, api)
    page.goto(f"/ui/runs/{run.id}")
    expect(page.locator("#steps")).to_contain_text("ValueError: boom in fails")
    page.fill("form.skip textarea[name=output_json]", '{"fixed": "by hand"}')
    page.get_by_role("button", name="Skip with this output").click()
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=30_000)
    assert run.wait(timeout=30)["fails"] == {"fixed": "by hand"}
    assert any(e.type == "operator_skip" and e.fields["actor"] == "token" for e in run.events())


def test_outputs_read_as_trees_with_code_as_code(browser: Browser, api: ApiProcess, client: redis.Redis) -> None:
    from coordinator.interfaces.demo import SAMPLE_DIFF

    run = start("code_review", input={"diff": SAMPLE_DIFF})
    results = run.wait(timeout=60)
    page = logged_in(browser, api)
    page.goto(f"/ui/runs/{run.id}")
    docs = page.locator("section.output", has=page.locator("h3", has_text="docs"))
    # The Markdown the doc generator wrote is a code block, line breaks kept; the fields a tree.
    expect(docs.locator("pre.code")).to_have_text(results["docs"]["markdown"])
    expect(docs.locator("dl.tree > dt")).to_have_text(list(results["docs"]))  # in the output's own order
