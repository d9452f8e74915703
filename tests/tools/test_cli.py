"""The tool commands in process (Typer's CliRunner) against local peers."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from rich.console import Console
from typer.testing import CliRunner

from forgeline.cli.app import app
from forgeline.cli.render import describe
from forgeline.core.events import (
    EmailSent,
    Event,
    GitHubCalled,
    PageFetched,
    ResearchWritten,
    ToolSearched,
)
from tests.pipeline import harness
from tests.scripts import todo_project
from tests.tools.peers import Peer, Reply, github_api, received
from tests.tools.test_delivery import git, repository
from tests.tools.test_fetch import ARTICLE, HTML

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_WORKSPACE", "FORGELINE_STORE", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def ws(tmp_path: Path, peer: Peer) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    (path / "forgeline.toml").write_text(
        f"""
[search]
provider = "searxng"
searxng_url = "{peer.url}"
min_interval = 0

[fetch]
private_hosts = ["localhost"]
timeout = 3

[github]
api_url = "{peer.url}"
token = "ghp_cli_token_000"
"""
    )
    return path


def invoke(ws: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "--workspace", str(ws)])


def searxng(peer: Peer) -> None:
    results = [
        {"url": f"http://localhost:{peer.port}/post", "title": "Editing TOML", "content": "How"}
    ]
    peer.route("GET /search", Reply(200, json.dumps({"query": "q", "results": results})))
    peer.route("GET /post", Reply(200, ARTICLE, HTML))


def test_search_then_history(ws: Path, peer: Peer) -> None:
    searxng(peer)
    result = invoke(ws, "search", "edit toml")
    assert result.exit_code == 0, result.output
    assert f"1. Editing TOML\n   http://localhost:{peer.port}/post\n   How" in result.output

    again = invoke(ws, "search", "edit toml")
    listed = invoke(ws, "search", "--history")
    assert again.exit_code == 0 and listed.exit_code == 0
    lines = listed.output.strip().splitlines()
    assert len(lines) == 2
    assert "searxng 'edit toml': 1 result(s)" in lines[0]
    assert lines[1].endswith("1 result(s) cached")
    assert len([r for r in peer.requests if r.path == "/search"]) == 1


def test_fetch_and_research(ws: Path, peer: Peer) -> None:
    searxng(peer)
    fetched = invoke(ws, "fetch", f"http://localhost:{peer.port}/post")
    assert fetched.exit_code == 0, fetched.output
    assert fetched.output.startswith("Title: Editing TOML with tomlkit\n")
    assert "tomlkit library keeps comments" in fetched.output

    researched = invoke(ws, "research", "TOML editing", "--sources", "1")
    assert researched.exit_code == 0, researched.output
    assert "wrote research/toml-editing.md (1 source(s))" in researched.output
    assert "1. Editing TOML with tomlkit." in (ws / "research" / "toml-editing.md").read_text()


def test_refused_fetch_is_a_clear_error(ws: Path, peer: Peer) -> None:
    result = invoke(ws, "fetch", f"http://127.0.0.1:{peer.port}/post")
    assert result.exit_code == 2
    assert "refused" in result.output and "Traceback" not in result.output


def test_report_pdf_and_html(tmp_path: Path, peer: Peer) -> None:
    async def run() -> str:
        async with harness.pipeline(tmp_path, workspace_venv=False) as pipeline:
            task_id, state = await harness.run_task(
                pipeline, "build a todo CLI that stores items in todo.json", "sequential",
                tmp_path / "ws",
            )  # fmt: skip
            assert state.status == "completed"
            return task_id

    task = asyncio.run(run())
    ws = tmp_path / "ws"
    pdf, html = tmp_path / "report.pdf", tmp_path / "report.html"

    result = invoke(ws, "report", task, "--pdf", str(pdf), "--html", str(html))

    assert result.exit_code == 0, result.output
    assert f"wrote {pdf}" in result.output.replace("\n", "")
    text = " ".join(PdfReader(pdf).pages[0].extract_text().split())
    assert "build a todo CLI that stores items in todo.json" in text
    assert "2 passed, 0 failed" in html.read_text()
    nobody = invoke(ws, "notify", task)
    assert nobody.exit_code == 0 and "nobody to tell: no [email] host" in nobody.output


def test_report_of_an_unknown_task(ws: Path) -> None:
    result = invoke(ws, "report", "nope")
    assert result.exit_code == 2
    assert "no task 'nope'" in result.output


def test_issue_as_a_request(ws: Path, peer: Peer) -> None:
    issue = {
        "number": 3,
        "title": "Add --verbose",
        "body": "Print each step.",
        "html_url": "https://gh.test/acme/cli/issues/3",
        "state": "open",
    }
    peer.route("GET /repos/acme/cli/issues/3", Reply(200, json.dumps(issue)))
    result = invoke(ws, "issue", "acme/cli#3")
    assert result.exit_code == 0, result.output
    assert result.output == "Add --verbose\n\nPrint each step.\n"
    assert peer.requests[0].headers["authorization"] == "token ghp_cli_token_000"
    bad = invoke(ws, "issue", "acme/cli 3")
    assert bad.exit_code == 2 and "OWNER/REPO#NUMBER" in bad.output


def test_run_from_an_issue_opens_the_linked_pull_request(tmp_path: Path, peer: Peer) -> None:
    github_api(peer)
    ws, remote = repository(tmp_path)
    (ws / "forgeline.toml").write_text(
        f"""{todo_project.CONFIG}
[github]
api_url = "{peer.url}"
token_env = "TEST_ISSUE_TOKEN"
repository = "acme/todo"
open_pr = true
"""
    )
    token = "ghp_IssueRunToken0123456789abcdefABCD"
    result = runner.invoke(
        app,
        ["run", "--from-issue", "acme/todo#7", "--workspace", str(ws), "--mode", "sequential"],
        env={"TEST_ISSUE_TOKEN": token},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "request from https://gh.test/acme/todo/issues/7" in result.output
    task = re.search(r"task (\w+) on branch", result.output)
    assert task is not None
    [create] = received(peer, "POST /repos/acme/todo/pulls")
    body = json.loads(create.body)["body"]
    assert "> Add a todo CLI\n>\n> It should store items in todo.json." in body
    assert "Closes acme/todo#7" in body
    [comment] = received(peer, "POST /repos/acme/todo/issues/7/comments")
    assert json.loads(comment.body)["body"] == (
        "forgeline opened https://gh.test/acme/todo/pull/12 for this issue."
    )
    assert git(remote, "rev-parse", f"forgeline/{task.group(1)}")
    # the events say where the request came from and what was delivered
    assert "github read issue acme/todo#7: https://gh.test/acme/todo/issues/7" in result.output
    assert "github pull request acme/todo#12" in result.output
    listed = invoke(ws, "events", task.group(1))
    assert "github read issue acme/todo#7" in listed.output
    assert token not in result.output + listed.output


@pytest.mark.parametrize("args", [[], ["todo cli", "--from-issue", "acme/todo#7"]])
def test_run_takes_a_request_or_an_issue(ws: Path, args: list[str]) -> None:
    result = invoke(ws, "run", *args)
    assert result.exit_code == 2
    assert "give either REQUEST or --from-issue OWNER/REPO#N" in result.output
    assert not (ws / ".git").exists()


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (ToolSearched(provider="searxng", query="tomlkit", error="HTTP 429"),
         "search 'tomlkit' (searxng) failed: HTTP 429"),
        (ToolSearched(provider="duckduckgo", query="x", cached=True),
         "search 'x' (duckduckgo): 0 result(s) from the cache"),
        (PageFetched(url="http://10.0.0.1/", error="a private address"),
         "fetch http://10.0.0.1/ refused: a private address"),
        (ResearchWritten(topic="t", path="research/t.md", references=("a", "b")),
         "wrote research/t.md with 2 reference(s)"),
        (GitHubCalled(action="comment", repository="acme/todo", number=7, url="https://x/7"),
         "github comment acme/todo#7: https://x/7"),
        (EmailSent(outcome="failed", recipients=("a@x",), subject="s", error="refused"),
         "e-mail (failed) to a@x failed: refused"),
    ],
)  # fmt: skip
def test_tool_events_are_described(data: Any, line: str) -> None:
    event = Event(
        stream_id="task-t", data=data, correlation_id="t", actor="coder", version=1, position=1
    )
    console = Console(width=200, record=True)
    console.print(describe(event))
    assert console.export_text().strip() == line
