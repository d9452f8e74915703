"""GitHub: push a task's branch, open its pull request, comment on and close issues, and
read an issue as a request.

The REST calls go through githubkit (``[github] api_url``: GitHub or an Enterprise
server's ``/api/v3``); the push is ``git push`` to the workspace's remote. The token
comes from ``[github] token`` or the variable ``token_env``; it reaches the API in
githubkit's Authorization header and git through an ``http.<url>.extraheader`` passed in
git's environment (never its command line), and only for an https remote on the API's
own host. Events (``tool.github``), error messages and git's output never hold it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from githubkit import GitHub as GitHubKit
from githubkit import TokenAuthStrategy, UnauthAuthStrategy
from githubkit.exception import GitHubException, RequestFailed, RequestTimeout
from pydantic_ai.toolsets import FunctionToolset

from forgeline.core.events import Event, GitHubCalled
from forgeline.errors import ConfigError, ForgelineError
from forgeline.observability.tracing import traced
from forgeline.tools.calls import Recorder, ignore
from forgeline.tools.config import GitHubConfig
from forgeline.tools.report.model import TaskReport
from forgeline.workspace.git import GitWorkspace

__all__ = [
    "GitHub",
    "GitHubError",
    "Issue",
    "IssueRef",
    "PullRequest",
    "issue_of",
    "pr_body",
    "repository_from_remote",
]

_ISSUE = re.compile(r"^(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)#(?P<number>\d+)$")


class GitHubError(ForgelineError):
    """A GitHub call or a push failed; the message says what GitHub or git answered."""


@dataclass(frozen=True)
class IssueRef:
    owner: str
    repo: str
    number: int

    @classmethod
    def parse(cls, text: str) -> IssueRef:
        match = _ISSUE.match(text.strip())
        if match is None:
            raise GitHubError(f"{text!r} is not an issue: write OWNER/REPO#NUMBER")
        return cls(match["owner"], match["repo"], int(match["number"]))

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.repo}"

    def __str__(self) -> str:
        return f"{self.repository}#{self.number}"


@dataclass(frozen=True)
class Issue:
    ref: IssueRef
    title: str
    body: str
    url: str
    state: str

    @property
    def request(self) -> str:
        """The issue as a request for ``forgeline run``: its title, then its text."""
        return f"{self.title}\n\n{self.body}".strip()


@dataclass(frozen=True)
class PullRequest:
    repository: str
    number: int
    url: str


def repository_from_remote(url: str) -> str | None:
    """``OWNER/REPO`` of a remote URL (https, ssh or scp-like), or None (a local path)."""
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        path = "" if parts.scheme == "file" else parts.path
    elif re.match(r"^[\w.-]+@[\w.-]+:", url):
        path = url.split(":", 1)[1]
    else:
        return None
    names = path.strip("/").removesuffix(".git").split("/")
    return "/".join(names[-2:]) if len(names) >= 2 and all(names[-2:]) else None


def issue_of(events: Iterable[Event]) -> IssueRef | None:
    """The issue a task's request was read from: ``forgeline run --from-issue`` records
    the read in the task's stream, a person's (``actor`` ``user``) ``tool.github``
    ``read_issue``."""
    for event in events:
        data = event.data
        if (
            isinstance(data, GitHubCalled)
            and event.actor == "user"
            and data.action == "read_issue"
            and data.error is None
            and data.number is not None
        ):
            owner, _, repo = data.repository.partition("/")
            return IssueRef(owner, repo, data.number)
    return None


def pr_body(report: TaskReport, issue: IssueRef | None = None) -> str:
    """The pull request's description: request, plan, tests, review, usage (Markdown)."""
    state = report.state
    lines = ["## Request", "", *(f"> {line}".rstrip() for line in state.request.splitlines()), ""]
    lines += ["## Plan", "", state.plan_summary or "(no plan)", ""]
    lines += [
        f"- [{'x' if item.status == 'completed' else ' '}] {item.item.title}"
        for item in state.items.values()
    ]
    if state.architecture is not None:
        lines += ["", "## Architecture", "", state.architecture.summary]
        lines += ["", f"Decision record: `{state.architecture.adr_path}`"]
    lines += ["", "## Tests", "", report.test_summary()]
    if state.last_test is not None and state.last_test.failing:
        lines += ["", *(f"- `{name}`" for name in state.last_test.failing)]
    lines += ["", "## Review", "", report.review_summary()]
    if state.last_review is not None:
        lines += [f"- {comment}" for comment in state.last_review.comments]
    lines += ["", "## Usage", "", report.usage_summary(), ""]
    if report.usage:
        lines += [
            "| role | model | calls | tokens in | tokens out | cost |",
            "|---|---|---|---|---|---|",
        ]
        for row in report.usage:
            role = "**total**" if row.role == "*" else row.role
            model = "" if row.model == "*" else f"`{row.model}`"
            lines.append(
                f"| {role} | {model} | {row.calls} | {row.input_tokens:,} "
                f"| {row.output_tokens:,} | ${row.cost_usd:.4f} |"
            )
        lines.append("")
    if issue is not None:
        lines += [f"Closes {issue}", ""]
    lines.append(f"Made by forgeline, task `{report.task_id}`.")
    return "\n".join(lines) + "\n"


class GitHub:
    """The GitHub tool with the ``[github]`` settings."""

    def __init__(
        self,
        config: GitHubConfig,
        *,
        recorder: Recorder = ignore,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.recorder = recorder
        env = os.environ if environ is None else environ
        secret = config.token.get_secret_value() if config.token else env.get(config.token_env)
        self._token = secret or None
        auth = TokenAuthStrategy(self._token) if self._token else UnauthAuthStrategy()
        self.client: GitHubKit[Any] = GitHubKit(
            auth,
            base_url=config.api_url,
            timeout=config.timeout,
            http_cache=False,
            user_agent="forgeline",
        )

    # ------------------------------------------------------------------ errors

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _error(self, what: str, exc: GitHubException) -> GitHubError:
        if isinstance(exc, RequestFailed):
            status = exc.response.status_code
            try:
                detail = exc.response.json().get("message", "")
            except ValueError:
                detail = exc.response.text[:200]
            hint = {
                401: f"the token was refused: check [github] token or ${self.config.token_env}",
                403: "the token may not do this (scopes, or a rate limit)",
                404: "not found, or the token cannot see it",
                422: "GitHub rejected the request (a pull request for the branch may exist)",
            }.get(status, "")
            message = f"{what}: GitHub answered HTTP {status} {detail}".rstrip()
            return GitHubError(self._scrub(f"{message}; {hint}" if hint else message))
        if isinstance(exc, RequestTimeout):
            return GitHubError(
                f"{what}: {self.config.api_url} did not answer within "
                f"{self.config.timeout:g}s ([github] timeout)"
            )
        return GitHubError(
            self._scrub(f"{what}: {self.config.api_url} could not be reached ({exc!r})")
        )

    async def _call(self, record: GitHubCalled, what: str, call: Any) -> Any:
        try:
            response = await call
        except GitHubException as exc:
            error = self._error(what, exc)
            self.recorder(record.model_copy(update={"error": str(error)}))
            raise error from None
        return response.json()

    # ------------------------------------------------------------------ issues

    @traced("github")
    async def read_issue(self, ref: IssueRef) -> Issue:
        record = GitHubCalled(action="read_issue", repository=ref.repository, number=ref.number)
        data = await self._call(
            record,
            f"reading {ref}",
            self.client.rest.issues.async_get(ref.owner, ref.repo, ref.number),
        )
        issue = Issue(ref, data["title"], data.get("body") or "", data["html_url"], data["state"])
        self.recorder(record.model_copy(update={"url": issue.url}))
        return issue

    @traced("github")
    async def comment(self, ref: IssueRef, body: str) -> str:
        record = GitHubCalled(action="comment", repository=ref.repository, number=ref.number)
        data = await self._call(
            record,
            f"commenting on {ref}",
            self.client.rest.issues.async_create_comment(
                ref.owner, ref.repo, ref.number, body=body
            ),
        )
        self.recorder(record.model_copy(update={"url": data["html_url"]}))
        return str(data["html_url"])

    @traced("github")
    async def close_issue(self, ref: IssueRef, comment: str | None = None) -> None:
        if comment:
            await self.comment(ref, comment)
        record = GitHubCalled(action="close_issue", repository=ref.repository, number=ref.number)
        data = await self._call(
            record,
            f"closing {ref}",
            self.client.rest.issues.async_update(
                ref.owner, ref.repo, ref.number, state="closed", state_reason="completed"
            ),
        )
        self.recorder(record.model_copy(update={"url": data["html_url"]}))

    def toolset(self) -> FunctionToolset[Any]:
        """A pydantic-ai toolset: ``read_issue`` and ``comment_on_issue``."""

        async def read_issue(issue: str) -> str:
            """Read a GitHub issue: its title and text.

            Args:
                issue: The issue as OWNER/REPO#NUMBER.
            """
            try:
                found = await self.read_issue(IssueRef.parse(issue))
            except GitHubError as exc:
                return f"error: {exc}\n"
            return f"{found.request}\n\n({found.url}, {found.state})\n"

        async def comment_on_issue(issue: str, body: str) -> str:
            """Comment on a GitHub issue.

            Args:
                issue: The issue as OWNER/REPO#NUMBER.
                body: The comment (Markdown).
            """
            try:
                return f"commented: {await self.comment(IssueRef.parse(issue), body)}\n"
            except GitHubError as exc:
                return f"error: {exc}\n"

        return FunctionToolset([read_issue, comment_on_issue])

    # ------------------------------------------------------------ pull request

    @traced("github")
    async def open_pull_request(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        owner, _, repo = repository.partition("/")
        record = GitHubCalled(action="pull_request", repository=repository, ref=head)
        data = await self._call(
            record,
            f"opening a pull request for {head} on {repository}",
            self.client.rest.pulls.async_create(
                owner, repo, head=head, base=base, title=title, body=body, draft=self.config.draft
            ),
        )
        pr = PullRequest(repository, int(data["number"]), str(data["html_url"]))
        self.recorder(record.model_copy(update={"number": pr.number, "url": pr.url}))
        return pr

    @traced("github")
    async def push(self, workspace: Path, branch: str) -> str:
        """Push ``branch`` to the ``[github] remote``; returns the remote's URL."""
        git = GitWorkspace(workspace)
        remote = self.config.remote
        url = (await git.git("remote", "get-url", remote, check=False)).strip()
        record = GitHubCalled(action="push", repository=self._repository(url), ref=branch)
        if not url:
            error = GitHubError(
                f"the workspace {workspace} has no git remote {remote!r}: add one "
                f"(git remote add {remote} URL) or set [github] remote"
            )
            self.recorder(record.model_copy(update={"error": str(error)}))
            raise error
        process = await asyncio.create_subprocess_exec(
            "git", "push", "--porcelain", remote, f"refs/heads/{branch}:refs/heads/{branch}",
            cwd=workspace,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self._git_auth(url), "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )  # fmt: skip
        out, err = await process.communicate()
        if process.returncode != 0:
            output = self._scrub((err or out).decode(errors="replace").strip())
            error = GitHubError(f"git push {remote} {branch} failed: {output}")
            self.recorder(record.model_copy(update={"error": str(error)}))
            raise error
        self.recorder(record.model_copy(update={"url": self._public(url)}))
        return self._public(url)

    def _git_auth(self, url: str) -> dict[str, str]:
        """git's environment for an https remote on the API's host: the token as a basic
        credential header (never in argv, where other users could read it)."""
        parts = urlsplit(url)
        api_host = urlsplit(self.config.api_url).hostname or ""
        token_host = api_host.removeprefix("api.")
        if not self._token or parts.scheme != "https" or parts.hostname != token_host:
            return {}
        credential = base64.b64encode(f"x-access-token:{self._token}".encode()).decode()
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.https://{parts.netloc}/.extraheader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {credential}",
        }

    @staticmethod
    def _public(url: str) -> str:
        """A remote URL without user information."""
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and "@" in parts.netloc:
            return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
        return url

    def _repository(self, remote_url: str) -> str:
        return self.config.repository or repository_from_remote(remote_url) or self.config.remote

    @staticmethod
    async def _base_branch(worktree: Path) -> str:
        """The branch checked out in the workspace's main checkout (a task works in a
        worktree of it, on its own branch)."""
        common = await GitWorkspace(worktree).git(
            "rev-parse", "--path-format=absolute", "--git-common-dir"
        )
        branch = await GitWorkspace(Path(common.strip()).parent).current_branch()
        if branch == "HEAD" or branch.startswith("forgeline/"):
            raise ConfigError(
                f"cannot tell which branch the pull request is for ({branch} is checked out "
                "in the workspace): set [github] base"
            )
        return branch

    async def deliver(
        self, report: TaskReport, *, issue: IssueRef | None = None, title: str | None = None
    ) -> PullRequest:
        """Push the task's branch and open its pull request (linked to ``issue``, which
        gets a comment with the link)."""
        state = report.state
        workspace = report.worktree
        if workspace is None:
            raise GitHubError(
                f"task {state.task_id} has no worktree on this machine to push its branch from"
            )
        url = await self.push(workspace, state.branch)
        repository = self._repository(url)
        if "/" not in repository:
            raise ConfigError(
                f"cannot tell the GitHub repository from the remote {url!r}: "
                'set [github] repository = "OWNER/REPO"'
            )
        base = self.config.base or await self._base_branch(workspace)
        first_line = state.request.strip().splitlines()[0] if state.request.strip() else ""
        pr = await self.open_pull_request(
            repository,
            head=state.branch,
            base=base,
            title=title or (first_line[:72] or f"forgeline task {report.task_id}"),
            body=pr_body(report, issue),
        )
        if issue is not None:
            await self.comment(issue, f"forgeline opened {pr.url} for this issue.")
        return pr
