"""Regenerate docs/dashboard.png, the README's picture of the dashboard, from a real run.

A server on a free loopback port runs a request on the scripted todo models; headless
Chromium (the system's, through Playwright) logs in, submits it, follows the live log to
``task.completed`` and opens the diff and the tests (the browser test's walk), and the task
view is saved.

    .venv/bin/python scripts/dashboard_screenshot.py [OUTPUT]   # default: docs/dashboard.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scripted models and the walk live in tests/

from tests.api.live import live_server  # noqa: E402
from tests.browser.walkthrough import chromium, walk  # noqa: E402


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else ROOT / "docs" / "dashboard.png"
    with (
        tempfile.TemporaryDirectory() as scratch,
        live_server(Path(scratch)) as live,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        walk(page, live, output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
