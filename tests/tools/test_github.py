"""GitHub: pushes to a real local bare repository, REST calls answered by a local server
that records them, and the token kept out of events, errors and logs."""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import GitHubCalled
from forgeline.tools.calls import ToolCalls
from forgeline.tools.config import GitHubConfig
from forgeline.tools.github import (
    GitHub,
    GitHubError,
    IssueRef,
    pr_body,
    repository_from_remote,
)
from forgeline.tools.report.model import load_report
from tests.tools.conftest import FinishedTask
from tests.tools.peers import JSON, Peer, Reply, github_api, received

TOKEN = "ghp_TestToken0123456789abcdefABCDEF0123"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def settings(peer: Peer, **values: object) -> GitHubConfig:
    return GitHubConfig.model_validate(
        {"api_url": peer.url, "token": TOKEN, "repository": "acme/todo", "timeout": 5, **values}
    )


async def test_deliver_pushes_and_opens_the_pull_request(
    finished_task: FinishedTask, peer: Peer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    github_api(peer)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(finished_task.workspace, "remote", "add", "origin", str(remote))
    report = await load_report(finished_task.store, finished_task.task_id, finished_task.workspaces)
    state = report.state
    calls = ToolCalls()

    pr = await GitHub(settings(peer), recorder=calls).deliver(
        report, issue=IssueRef.parse("acme/todo#7")
    )

    assert (pr.number, pr.url) == (12, "https://gh.test/acme/todo/pull/12")
    assert git(remote, "rev-parse", state.branch) == state.head
    [create] = received(peer, "POST /repos/acme/todo/pulls")
    sent = json.loads(create.body)
    assert sent["head"] == state.branch and sent["base"] == "main"
    assert sent["title"] == "build a todo CLI that stores items in todo.json"
    body = sent["body"]
    assert body == pr_body(report, IssueRef.parse("acme/todo#7"))
    assert "> build a todo CLI that stores items in todo.json" in body
    assert f"## Plan\n\n{state.plan_summary}" in body
    assert "## Tests\n\n2 passed, 0 failed, 0 errors" in body
    assert "## Review\n\napproved" in body
    assert report.usage_summary() in body and "| **total** |" in body
    assert "Closes acme/todo#7" in body
    assert create.headers["authorization"] == f"token {TOKEN}"
    [comment] = received(peer, "POST /repos/acme/todo/issues/7/comments")
    assert json.loads(comment.body) == {"body": f"forgeline opened {pr.url} for this issue."}

    assert [(r.action, r.error) for r in calls.records if isinstance(r, GitHubCalled)] == [
        ("push", None),
        ("pull_request", None),
        ("comment", None),
    ]
    events = calls.events(
        stream_id="task-x",
        correlation_id="x",
        causation_id=None,
        actor="deliver",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert all(TOKEN not in e.model_dump_json() for e in events)
    assert TOKEN not in caplog.text


async def test_issue_read_commented_and_closed(peer: Peer) -> None:
    github_api(peer)
    calls = ToolCalls()
    tool = GitHub(settings(peer), recorder=calls)
    ref = IssueRef.parse("acme/todo#7")

    issue = await tool.read_issue(ref)
    await tool.close_issue(ref, comment="Done in #12.")

    assert issue.request == "Add a todo CLI\n\nIt should store items in todo.json."
    assert issue.url == "https://gh.test/acme/todo/issues/7"
    [patch] = received(peer, "PATCH /repos/acme/todo/issues/7")
    assert json.loads(patch.body) == {"state": "closed", "state_reason": "completed"}
    [comment] = received(peer, "POST /repos/acme/todo/issues/7/comments")
    assert json.loads(comment.body) == {"body": "Done in #12."}
    assert [r.action for r in calls.records if isinstance(r, GitHubCalled)] == [
        "read_issue",
        "comment",
        "close_issue",
    ]


async def test_token_from_the_environment(peer: Peer) -> None:
    github_api(peer)
    config = settings(peer, token=None, token_env="TEST_GH_TOKEN")
    await GitHub(config, environ={"TEST_GH_TOKEN": "from-env"}).read_issue(
        IssueRef("acme", "todo", 7)
    )
    assert peer.requests[0].headers["authorization"] == "token from-env"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply(401, json.dumps({"message": "Bad credentials"}), JSON),
            "HTTP 401 Bad credentials.*token",
        ),
        (Reply(404, json.dumps({"message": "Not Found"}), JSON), "HTTP 404 Not Found; not found"),
        (Reply(200, "{}", JSON, delay=2), r"did not answer within 1s \(\[github\] timeout\)"),
    ],
    ids=["401", "404", "slow"],
)
async def test_bad_answers_are_clear_errors(peer: Peer, reply: Reply, message: str) -> None:
    peer.route("GET /repos/acme/todo/issues/7", reply)
    calls = ToolCalls()
    with pytest.raises(GitHubError, match=message):
        await GitHub(settings(peer, timeout=1), recorder=calls).read_issue(
            IssueRef("acme", "todo", 7)
        )
    [record] = calls.records
    assert isinstance(record, GitHubCalled) and record.error


async def test_pull_request_that_exists(peer: Peer) -> None:
    body = {
        "message": "Validation Failed",
        "errors": [{"message": "A pull request already exists"}],
    }
    peer.route("POST /repos/acme/todo/pulls", Reply(422, json.dumps(body), JSON))
    with pytest.raises(GitHubError, match=r"HTTP 422 Validation Failed.*may exist"):
        await GitHub(settings(peer)).open_pull_request(
            "acme/todo", head="forgeline/x", base="main", title="t", body="b"
        )


async def test_push_failure_keeps_the_token_out(peer: Peer, tmp_path: Path) -> None:
    # an https remote on the API's host gets the token; the push fails (nothing listens)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    git(
        workspace,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    git(workspace, "remote", "add", "origin", "https://127.0.0.1:9/acme/todo.git")
    calls = ToolCalls()
    tool = GitHub(settings(peer), recorder=calls)
    assert "GIT_CONFIG_VALUE_0" in tool._git_auth("https://127.0.0.1:9/acme/todo.git")
    assert tool._git_auth("https://elsewhere.test/acme/todo.git") == {}

    with pytest.raises(GitHubError, match="git push origin main failed") as failure:
        await tool.push(workspace, "main")

    assert TOKEN not in str(failure.value)
    [record] = calls.records
    assert isinstance(record, GitHubCalled) and record.repository == "acme/todo"
    assert TOKEN not in record.model_dump_json()


async def test_push_without_the_remote(peer: Peer, tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(GitHubError, match=r"no git remote 'origin'.*git remote add origin"):
        await GitHub(settings(peer)).push(tmp_path, "main")


def test_issue_refs_and_remotes() -> None:
    assert IssueRef.parse(" acme/todo#7 ") == IssueRef("acme", "todo", 7)
    with pytest.raises(GitHubError, match="OWNER/REPO#NUMBER"):
        IssueRef.parse("acme/todo 7")
    assert repository_from_remote("https://github.com/acme/todo.git") == "acme/todo"
    assert repository_from_remote("git@github.com:acme/todo.git") == "acme/todo"
    assert repository_from_remote("ssh://git@ghe.test:2222/acme/todo") == "acme/todo"
    assert repository_from_remote("/srv/git/todo.git") is None
    assert repository_from_remote("file:///srv/git/todo.git") is None


async def test_agent_reads_and_comments(peer: Peer) -> None:
    github_api(peer)
    steps = iter(
        [
            ToolCallPart("read_issue", {"issue": "acme/todo#7"}),
            ToolCallPart("comment_on_issue", {"issue": "acme/todo#7", "body": "On it."}),
            ToolCallPart("read_issue", {"issue": "not an issue"}),
        ]
    )
    answers: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        answers.extend(str(p.content) for p in messages[-1].parts if p.part_kind == "tool-return")
        return ModelResponse(parts=[next(steps, None) or TextPart("done")])

    await Agent(FunctionModel(model), toolsets=[GitHub(settings(peer)).toolset()]).run("go")

    assert answers[0].startswith("Add a todo CLI\n\nIt should store items in todo.json.")
    assert answers[1] == "commented: https://gh.test/acme/todo/issues/7#c1\n"
    assert answers[2].startswith("error: 'not an issue' is not an issue")
