"""A user's walk through the dashboard, in headless Chromium (the system's browser, driven
by Playwright): log in with a key, submit a request that runs on the scripted models,
watch the live log reach ``task.completed``, open the diff and the test results.

Shared by the browser test and ``scripts/dashboard_screenshot.py`` (the README's picture).
Every wait is on what the page shows (Playwright's ``expect`` retries until it holds), so
a slow machine takes longer but never fails a step early: ``WAIT`` and ``RUN`` are limits
for a page that never gets there, not durations.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.api.live import Live

WAIT = 60_000
"""Milliseconds a step may take to show (a page fetch, a re-render) on a loaded machine."""
RUN = 300_000
"""Milliseconds the whole task may take on the scripted models."""


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no Chromium on PATH: scripts/test installs Debian's chromium")


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            browser.close()


def walk(page: Page, live: Live, screenshot: Path) -> None:
    """Log in, submit, follow the task to completion, look at its diff and tests; the
    task view with its live log is saved to ``screenshot``; ends on the task list."""
    page.set_default_timeout(WAIT)
    page.goto(live.url + "/")

    # A wrong key is refused and the page says so; the right one logs in.
    page.fill("#key", "flk_nobody_nothing")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).not_to_be_empty(timeout=WAIT)
    page.fill("#key", live.keys["write"])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#tasks")).to_be_visible(timeout=WAIT)

    page.fill("#request", "a todo CLI")
    page.fill("#workspace", "todo")
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#task")).to_be_visible(timeout=WAIT)
    expect(page.locator("#live")).to_have_text("live", timeout=WAIT)

    completed = page.locator('#log li[data-type="task.completed"]')
    try:
        expect(completed).to_have_count(1, timeout=RUN)
    except AssertionError as failure:
        failed = screenshot.with_name(screenshot.stem + "-failed.png")
        page.screenshot(path=str(failed), full_page=True)
        shown = page.locator("#log").inner_text()[-2000:]
        raise AssertionError(f"no task.completed in the live log; it shows:\n{shown}") from failure
    expect(page.locator('#log li[data-type="test.results"]').first).to_be_visible(timeout=WAIT)
    # the view re-reads the task after the last event: its facts are final
    expect(page.locator("#task-status")).to_have_text("completed", timeout=WAIT)

    page.click('.tabs button[data-tab="diff"]')
    expect(page.locator("#diff")).to_contain_text("+++ b/", timeout=WAIT)
    page.click('.tabs button[data-tab="tests"]')
    expect(page.locator("#test-summary")).to_contain_text("0 failed", timeout=WAIT)

    page.click('.tabs button[data-tab="log"]')
    expect(page.locator("#tab-log")).to_be_visible(timeout=WAIT)
    page.screenshot(path=str(screenshot), full_page=True)

    # The task list shows it completed.
    page.click("#nav-tasks")
    expect(page.locator("#task-table tbody tr").first).to_contain_text("completed", timeout=WAIT)
