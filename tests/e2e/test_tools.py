"""A request through the real `forgeline` command that researches before it codes, then
delivers: it searches (a local server answering like SearXNG), fetches and cites a local
page, codes on scripted models, opens a pull request on the local remote (a real bare
repository and a local server answering GitHub's REST API) and e-mails the report (a
real SMTP server). No token or password reaches an event or a log line."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from forgeline.core.events import Event
from forgeline.store import SQLiteEventStore
from tests.e2e.helpers import forgeline, git, task_id_from
from tests.scripts import research_project
from tests.tools.peers import PASSWORD, Peer, Reply, github_api, received, searxng, smtp_server
from tests.tools.test_delivery import repository
from tests.tools.test_fetch import ARTICLE, HTML

pytestmark = pytest.mark.slow

REQUEST = "build a todo CLI that stores items in todo.json, kept as tidy as tomlkit keeps TOML"
TOKEN = "ghp_EndToEndToken0123456789abcdefABCD"


def config(peer: Peer, smtp_port: int) -> str:
    return f"""{research_project.CONFIG}
[search]
provider = "searxng"
searxng_url = "{peer.url}"
min_interval = 0

[fetch]
private_hosts = ["localhost"]
timeout = 10

[research]
enabled = true

[github]
api_url = "{peer.url}"
token_env = "E2E_GITHUB_TOKEN"
repository = "acme/todo"
open_pr = true

[email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
username = "forgeline"
password_env = "E2E_SMTP_PASSWORD"
sender = "forgeline@example.org"

[email.notify]
completed = ["lead@example.org"]

[telemetry]
log_format = "json"
log_level = "debug"
"""


async def recorded(ws: Path) -> list[Event]:
    async with SQLiteEventStore(ws / ".forgeline" / "forgeline.db") as store:
        return await store.read_all(after=0, limit=10_000)


def test_research_code_pull_request_and_email(tmp_path: Path) -> None:
    ws, remote = repository(tmp_path)
    with Peer() as peer, smtp_server() as (inbox, smtp_port):
        github_api(peer)
        searxng(peer, "/post")
        peer.route("GET /post", Reply(200, ARTICLE, HTML))
        settings_file = tmp_path / "forgeline.toml"
        settings_file.write_text(config(peer, smtp_port))

        result = forgeline(
            "run", REQUEST, "--workspace", str(ws), "--config", str(settings_file),
            "--mode", "sequential", tmp_path=tmp_path, timeout=300,
            E2E_GITHUB_TOKEN=TOKEN, E2E_SMTP_PASSWORD=PASSWORD,
        )  # fmt: skip
        events = asyncio.run(recorded(ws))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    task_id = task_id_from(result.stdout)
    branch = f"forgeline/{task_id}"
    page = f"http://localhost:{peer.port}/post"
    slug = research_project.SLUG

    # searched, fetched and cited: the note on the branch, pushed to the remote
    assert f"wrote research/{slug}.md with 1 reference(s)" in result.stdout
    note = git(remote, "show", f"{branch}:research/{slug}.md")
    assert note.startswith(f"# {research_project.TOPIC}\n")
    assert f"1. Editing TOML with tomlkit. <{page}> (fetched " in note
    # the coder had the notes in its prompt: its code quotes the first reference
    todo = git(remote, "show", f"{branch}:todo.py")
    assert todo.startswith(f"# Research: Editing TOML with tomlkit. <{page}>")
    # the pull request, on the pushed branch, with plan, tests, review and usage
    [create] = received(peer, "POST /repos/acme/todo/pulls")
    sent = json.loads(create.body)
    assert (sent["head"], sent["base"]) == (branch, "main")
    body = sent["body"]
    assert f"> {REQUEST}" in body
    assert "- [x] research" in body and "- [x] todo module and CLI" in body
    assert "## Tests\n\n2 passed, 0 failed, 0 errors" in body
    assert "## Review\n\napproved" in body
    assert "## Usage" in body and "| **total** |" in body
    assert create.headers["authorization"] == f"token {TOKEN}"
    assert "github pull request acme/todo#12" in result.stdout
    # the e-mail, with the PDF report
    [(_, recipients, message)] = inbox.messages
    assert recipients == ["lead@example.org"]
    assert message["Subject"].startswith(f"[forgeline] task {task_id} completed: {REQUEST[:40]}")
    text = message.get_body(("plain",))
    assert text is not None
    assert "Pull request: https://gh.test/acme/todo/pull/12" in text.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    pdf_text = " ".join(
        PdfReader(io.BytesIO(attachment.get_content())).pages[0].extract_text().split()
    )
    assert "build a todo CLI" in pdf_text and "2 passed" in pdf_text
    # recorded: the research step's calls and the delivery, in the task's stream
    types = [e.type for e in events if e.stream_id == f"task-{task_id}"]
    assert types[:8] == research_project.EVENT_CHAIN[:8]
    assert types[-4:] == ["task.completed", "tool.github", "tool.github", "tool.email"]
    # structured logs on stderr carry the task's ids
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    staged = [line for line in lines if line.get("stage") == "coder"]
    assert staged and all(line["task_id"] == task_id for line in staged)
    assert all(line["correlation_id"] == task_id for line in staged)
    # no secret anywhere
    for secret in (TOKEN, PASSWORD):
        assert secret not in output
        assert all(secret not in e.model_dump_json() for e in events)
