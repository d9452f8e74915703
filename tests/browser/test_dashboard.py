"""The dashboard in headless Chromium (the system's browser, driven by Playwright): log in
with a key, submit a request that runs on the scripted models, watch the live log reach
``task.completed``, open the diff and the test results (``walkthrough.walk``). The
screenshot is kept in ``FORGELINE_ARTIFACTS`` (default: ``test-artifacts/``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.api.live import Live, live_server
from tests.browser.walkthrough import chromium, walk


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


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

    walk(page, live, artifacts / "dashboard.png")

    assert (artifacts / "dashboard.png").stat().st_size > 0
    assert errors == [], "the page raised errors"
