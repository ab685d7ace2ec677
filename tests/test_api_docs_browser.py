"""/docs and /redoc render in a real browser (Debian's Chromium, driven by Playwright) with every
request outside the API refused: the pages work on a machine without internet."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, Route

from coordinator.interfaces.stack import ApiProcess

DOCS = Path(__file__).resolve().parent.parent / "docs"


def offline_page(browser: Browser, api: ApiProcess, outside: list[str]) -> Page:
    """A page whose requests to anywhere but the API fail (and are recorded in ``outside``)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    def only_the_api(route: Route) -> None:
        if route.request.url.startswith(api.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_api)
    return page


def test_swagger_ui_renders_every_operation_offline(browser: Browser, api: ApiProcess) -> None:
    outside: list[str] = []
    page = offline_page(browser, api, outside)
    page.goto(f"{api.url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = {text.replace("\u200b", "") for text in page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/workflows", "/approvals/{approval_id}", "/workflows/{run_id}/steps/{step}/skip"} <= paths
    document = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    assert page.locator(".opblock").count() == sum(len(operations) for operations in document["paths"].values())
    page.screenshot(path=str(DOCS / "api-docs.png"))
    assert outside == []


def test_redoc_renders_the_problem_schema_offline(browser: Browser, api: ApiProcess) -> None:
    outside: list[str] = []
    page = offline_page(browser, api, outside)
    page.goto(f"{api.url}/redoc")
    page.wait_for_selector("text=Start a workflow run", timeout=30_000)
    page.get_by_text("Problem", exact=False).first.wait_for(timeout=10_000)  # the error schema is shown
    page.screenshot(path=str(DOCS / "api-redoc.png"))
    # ReDoc's footer links its vendor's logo from a CDN; refused, the page still renders. Nothing
    # the page needs comes from outside.
    assert [url for url in outside if not url.endswith("/redoc/logo-mini.svg")] == []
