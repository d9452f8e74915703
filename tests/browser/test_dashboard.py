"""The dashboard in headless Chromium (the system's browser, driven by Playwright): log in
with a key, submit a request that runs on the scripted models, watch the live log reach
``task.completed``, open the diff and the test results. The screenshot is kept in
``FORGELINE_ARTIFACTS`` (default: ``test-artifacts/``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.api.live import Live, live_server


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no Chromium on PATH: scripts/test installs Debian's chromium")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_server(tmp_path) as server:
        yield server


def test_a_request_submitted_and_watched_to_completion(live: Live, browser: Browser) -> None:
    artifacts = Path(os.environ.get("FORGELINE_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live.url + "/")

    # A wrong key is refused and the page says so; the right one logs in.
    page.fill("#key", "flk_nobody_nothing")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).not_to_be_empty()
    page.fill("#key", live.keys["write"])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#tasks")).to_be_visible()

    page.fill("#request", "a todo CLI")
    page.fill("#workspace", "todo")
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#task")).to_be_visible()

    completed = page.locator('#log li[data-type="task.completed"]')
    try:
        expect(completed).to_have_count(1, timeout=120_000)
    except AssertionError as failure:
        page.screenshot(path=str(artifacts / "dashboard-failed.png"), full_page=True)
        shown = page.locator("#log").inner_text()[-2000:]
        raise AssertionError(f"no task.completed in the live log; it shows:\n{shown}") from failure
    expect(page.locator('#log li[data-type="test.results"]').first).to_be_visible()

    page.click('.tabs button[data-tab="diff"]')
    expect(page.locator("#diff")).to_contain_text("+++ b/")
    page.click('.tabs button[data-tab="tests"]')
    expect(page.locator("#test-summary")).to_contain_text("0 failed")

    page.click('.tabs button[data-tab="log"]')
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    # The task list shows it completed; nothing went wrong in the page.
    page.click("#nav-tasks")
    expect(page.locator("#task-table tbody tr").first).to_contain_text("completed")
    assert errors == []
