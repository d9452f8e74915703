"""Delivery of a task's outcomes by the runtime: the pull request on a completed task
(pushed to a real bare repository, opened on a local server answering GitHub's REST
API) and e-mails on completed / failed / needs clarification / budget paused (a real
SMTP server), each exactly once, across runs and restarts."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.models import Model
from pypdf import PdfReader

from forgeline.config import Settings
from forgeline.core.events import Budget, EmailSent, Event, GitHubCalled, task_stream
from forgeline.llm.gateway import ModelRegistry
from forgeline.llm.scripted import scripted_model
from forgeline.pipeline.execution import SharedWorkers
from forgeline.runtime import Runtime, open_runtime
from forgeline.sandbox.local import LocalSpawner
from tests.scripts import todo_project
from tests.tools.peers import PASSWORD, Inbox, Peer, github_api, received, smtp_server

TOKEN = "ghp_DeliveryToken0123456789abcdefABCD"
REQUEST = "build a todo CLI that stores items in todo.json"
NOTIFY = {
    "completed": ["lead@example.org"],
    "failed": ["oncall@example.org"],
    "needs_clarification": ["product@example.org"],
    "awaiting_approval": ["budget@example.org"],
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def repository(tmp_path: Path) -> tuple[Path, Path]:
    """The workspace ``ws`` on ``main`` with a bare ``origin``."""
    workspace, remote = tmp_path / "ws", tmp_path / "remote.git"
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "README.md").write_text("todo\n")
    git(workspace, "add", "README.md")
    git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(workspace, "remote", "add", "origin", str(remote))
    return workspace, remote


def settings(tmp_path: Path, peer: Peer, port: int, **values: Any) -> Settings:
    return Settings.model_validate(
        {
            "workspaces_root": tmp_path,
            "store": f"sqlite:///{tmp_path / 'ws' / '.forgeline' / 'forgeline.db'}",
            "workspace_venv": False,
            "mode": "sequential",
            "github": {
                "api_url": peer.url,
                "token": TOKEN,
                "repository": "acme/todo",
                "open_pr": True,
                "timeout": 5,
            },
            "email": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "username": "forgeline",
                "password": PASSWORD,
                "sender": "forgeline@example.org",
                "timeout": 5,
                "notify": NOTIFY,
            },
            **values,
        }
    )


@asynccontextmanager
async def runtime_for(
    config: Settings, models: dict[str, Model] | None = None, **options: Any
) -> AsyncIterator[Runtime]:
    registry = ModelRegistry(models or todo_project.models())  # type: ignore[arg-type]
    async with open_runtime(config, models=registry, spawner=LocalSpawner(), **options) as rt:
        yield rt


async def delivered(runtime: Runtime, task_id: str) -> list[Event]:
    events = await runtime.store.read_stream(task_stream(task_id))
    return [e for e in events if e.actor == "delivery"]


def to(inbox: Inbox) -> list[list[str]]:
    return [recipients for _, recipients, _ in inbox.messages]


async def test_a_completed_task_gets_its_pull_request_and_one_email(
    tmp_path: Path, peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    github_api(peer)
    _, remote = repository(tmp_path)
    with smtp_server() as (inbox, port):
        config = settings(tmp_path, peer, port)
        async with runtime_for(config) as runtime:
            task_id = await runtime.submit(REQUEST, tmp_path / "ws")
            state = await runtime.run_until_settled(task_id)
            assert state.status == "completed", state.failure
            await runtime.run_until_settled(task_id)  # settled already: nothing again
        async with runtime_for(config) as restarted:  # a restart delivers nothing again
            await restarted.run_until_settled(task_id)
            events = await delivered(restarted, task_id)
            everything = await restarted.store.read_all()

    # the branch went to the remote, the pull request to "GitHub"
    assert git(remote, "rev-parse", state.branch) == state.head
    [create] = received(peer, "POST /repos/acme/todo/pulls")
    sent = json.loads(create.body)
    assert (sent["head"], sent["base"], sent["title"]) == (state.branch, "main", REQUEST)
    assert f"## Plan\n\n{state.plan_summary}" in sent["body"]
    assert "## Tests\n\n2 passed, 0 failed, 0 errors" in sent["body"]
    assert "## Review\n\napproved" in sent["body"] and "## Usage" in sent["body"]
    assert create.headers["authorization"] == f"token {TOKEN}"
    # one e-mail, with the pull request's address and the PDF report
    [(sender, recipients, message)] = inbox.messages
    assert (sender, recipients) == ("forgeline@example.org", ["lead@example.org"])
    assert message["Subject"] == f"[forgeline] task {task_id} completed: {REQUEST}"
    text = message.get_body(("plain",))
    assert text is not None
    assert "Pull request: https://gh.test/acme/todo/pull/12" in text.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"forgeline-{task_id}.pdf"
    pdf = PdfReader(io.BytesIO(attachment.get_content()))
    assert "2 passed" in " ".join(pdf.pages[0].extract_text().split())
    # recorded once, in the task's stream, chained from the outcome
    push, opened, mailed = events
    completed = next(e for e in everything if e.type == "task.completed")
    assert isinstance(push.data, GitHubCalled) and push.data.action == "push"
    assert isinstance(opened.data, GitHubCalled) and opened.data.number == 12
    assert isinstance(mailed.data, EmailSent) and mailed.data.error is None
    assert mailed.data.attachments == (f"forgeline-{task_id}.pdf",)
    assert push.causation_id == completed.id
    assert (opened.causation_id, mailed.causation_id) == (push.id, opened.id)
    # no secret in any event or log line
    for secret in (TOKEN, PASSWORD):
        assert all(secret not in e.model_dump_json() for e in everything)
        assert secret not in caplog.text


async def test_each_outcome_tells_its_people(tmp_path: Path, peer: Peer) -> None:
    question = {"id": "q", "title": "Which file should hold the items?", "kind": "clarification"}
    items = [question, *todo_project.PLAN["items"]]
    items[1] = {**items[1], "depends_on": ["q"]}
    planner = scripted_model([{"summary": "todo", "items": items}])
    repository(tmp_path)
    with smtp_server() as (inbox, port):
        config = settings(tmp_path, peer, port, github={"open_pr": False})
        async with runtime_for(config, todo_project.models(planner=planner)) as runtime:
            task_id = await runtime.submit(REQUEST, tmp_path / "ws", budget=Budget(tokens=1))
            paused = await runtime.run_until_settled(task_id)
            assert paused.status == "awaiting_approval"
            await runtime.approve(task_id, Budget())
            asked = await runtime.run_until_settled(task_id)
            assert asked.status == "needs_clarification"
            await runtime.answer(task_id, "todo.json")
            done = await runtime.run_until_settled(task_id)
            assert done.status == "completed", done.failure
            events = await delivered(runtime, task_id)

    assert to(inbox) == [["budget@example.org"], ["product@example.org"], ["lead@example.org"]]
    subjects = [message["Subject"] for _, _, message in inbox.messages]
    assert subjects[0].startswith(f"[forgeline] task {task_id} paused by its budget:")
    assert subjects[1].startswith(f"[forgeline] task {task_id} needs your answer:")
    body = inbox.messages[1][2].get_body(("plain",))
    assert body is not None and "Question: Which file should hold the items?" in body.get_content()
    assert [e.data.outcome for e in events if isinstance(e.data, EmailSent)] == [
        "awaiting_approval",
        "needs_clarification",
        "completed",
    ]
    assert not received(peer, "POST /repos/acme/todo/pulls")


async def test_a_failing_pull_request_still_emails(tmp_path: Path, peer: Peer) -> None:
    peer.route("POST /repos/acme/todo/pulls", lambda _: _forbidden())
    repository(tmp_path)
    with smtp_server() as (inbox, port):
        async with runtime_for(settings(tmp_path, peer, port)) as runtime:
            task_id = await runtime.submit(REQUEST, tmp_path / "ws")
            assert (await runtime.run_until_settled(task_id)).status == "completed"
            events = await delivered(runtime, task_id)

    assert [(type(e.data).__name__, getattr(e.data, "error", None) is None) for e in events] == [
        ("GitHubCalled", True),  # the push
        ("GitHubCalled", False),  # the pull request, refused
        ("EmailSent", True),
    ]
    refused = events[1].data
    assert isinstance(refused, GitHubCalled) and "HTTP 403" in (refused.error or "")
    [(_, _, message)] = inbox.messages
    body = message.get_body(("plain",))
    assert body is not None and "Pull request:" not in body.get_content()


def _forbidden() -> Any:
    from tests.tools.peers import JSON, Reply

    return Reply(403, json.dumps({"message": "Resource not accessible by integration"}), JSON)


async def test_a_shared_execution_delivers_as_a_subscriber(tmp_path: Path, peer: Peer) -> None:
    broken = todo_project.models(planner=scripted_model(["not json"]))  # fails at once
    repository(tmp_path)
    with smtp_server() as (inbox, port):
        config = settings(tmp_path, peer, port, output_retries=0, github={"open_pr": False})
        quiet = config.model_copy(update={"email": config.email.model_copy(update={"host": None})})
        async with runtime_for(quiet, broken) as before:  # delivery not configured yet
            old = await before.submit(REQUEST, tmp_path / "ws")
            assert (await before.run_until_settled(old)).status == "failed"
        async with runtime_for(config, broken, execution=SharedWorkers) as server:
            new = await server.submit(REQUEST, tmp_path / "ws")
            assert (await server.run_until_settled(new)).status == "failed"
            for _ in range(100):  # the subscriber delivers on its own time
                if inbox.messages:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # and nothing more arrives, for the old task either
            events = await delivered(server, new)

    [(_, recipients, message)] = inbox.messages
    assert recipients == ["oncall@example.org"]
    assert message["Subject"].startswith(f"[forgeline] task {new} failed:")
    assert [type(e.data).__name__ for e in events] == ["EmailSent"]
