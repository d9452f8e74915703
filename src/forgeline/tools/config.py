"""Settings of the research and delivery tools (note 002): ``[search]``, ``[fetch]``,
``[research]``, ``[github]`` and ``[email]`` in forgeline.toml
(``forgeline.config.Settings`` holds them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class SearchConfig(BaseModel):
    """Web search: the ``[search]`` table."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["duckduckgo", "searxng"] = "duckduckgo"
    duckduckgo_url: str = "https://html.duckduckgo.com/html/"
    """DuckDuckGo's HTML endpoint (the ``ddgs`` library's DuckDuckGo engine posts to it)."""
    searxng_url: str | None = None
    """A SearXNG instance's base URL, its JSON format enabled (``provider = "searxng"``)."""
    max_results: int = Field(8, ge=1, le=50)
    region: str = "wt-wt"
    timeout: float = Field(10, gt=0)
    """Seconds one provider request may take."""
    min_interval: float = Field(2.0, ge=0)
    """Seconds between two requests to the same provider (rate limit, per process)."""
    cache_ttl: float = Field(86_400, ge=0)
    """Seconds a provider's answer is reused from the cache in the event store; 0: off."""


class FetchConfig(BaseModel):
    """Fetching pages for research: the ``[fetch]`` table."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(20, gt=0)
    """Seconds one fetch may take in all (redirects and robots.txt included)."""
    max_bytes: int = Field(2_000_000, ge=1_000)
    max_redirects: int = Field(5, ge=0, le=20)
    content_types: tuple[str, ...] = (
        "text/html",
        "application/xhtml+xml",
        "text/plain",
        "text/markdown",
    )
    allow_private: bool = False
    """Fetch from private, loopback and link-local addresses (checked on the resolved
    address of every connection, redirects included)."""
    private_hosts: tuple[str, ...] = ()
    """Host names that may resolve to such addresses (an intranet's documentation)."""
    robots: bool = True
    """Honour robots.txt (for ``user_agent``)."""
    user_agent: str = "forgeline-research/0.1"
    max_chars: int = Field(20_000, ge=500)
    """Characters of extracted text returned to a model."""


class ResearchConfig(BaseModel):
    """The planner's research steps: the ``[research]`` table."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    """Let the planner schedule a research step for a library, an API or a standard the
    request names, and let such a step search and fetch. Off by default: it reaches the
    web, and what it reads goes into the coder's prompt."""
    sources: int = Field(3, ge=1, le=10)
    """Pages a research step reads and cites (a step may ask for another number)."""


class GitHubConfig(BaseModel):
    """Pull requests and issues: the ``[github]`` table. The token comes from ``token``
    or the variable ``token_env``; it is never recorded or logged."""

    model_config = ConfigDict(extra="forbid")

    api_url: str = "https://api.github.com"
    """The REST API's base URL (GitHub Enterprise: ``https://HOST/api/v3``)."""
    token: SecretStr | None = None
    """Prefer ``token_env``: tokens in files end up in backups."""
    token_env: str = "GITHUB_TOKEN"
    remote: str = "origin"
    """The workspace's git remote the task branch is pushed to."""
    repository: str | None = None
    """``OWNER/REPO`` for pull requests; default: read from the remote's URL."""
    base: str | None = None
    """The branch a pull request merges into; default: the branch the task started from."""
    draft: bool = False
    timeout: float = Field(30, gt=0)
    open_pr: bool = False
    """Push the branch and open the pull request when a task completes (linked to the
    issue of ``forgeline run --from-issue``)."""


Outcome = Literal["completed", "failed", "needs_clarification", "awaiting_approval"]


class NotifyConfig(BaseModel):
    """Who is told of which task outcome: ``[email.notify]``, one list of addresses per
    outcome (``awaiting_approval``: a budget paused the task)."""

    model_config = ConfigDict(extra="forbid")

    completed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    needs_clarification: tuple[str, ...] = ()
    awaiting_approval: tuple[str, ...] = ()

    def recipients(self, outcome: Outcome) -> tuple[str, ...]:
        addresses: tuple[str, ...] = getattr(self, outcome)
        return addresses


class EmailConfig(BaseModel):
    """Notifications over SMTP: the ``[email]`` table; off while ``host`` is unset."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = None
    port: int = Field(587, ge=1, le=65_535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    """Prefer ``password_env``."""
    password_env: str | None = None
    sender: str = "forgeline@localhost"
    ca_file: str | None = None
    """Trust this CA bundle for the server's certificate (a private relay)."""
    timeout: float = Field(30, gt=0)
    attach_report: bool = True
    """Attach the task's PDF report."""
    templates: str | None = None
    """A directory whose ``email.txt.j2`` / ``email.html.j2`` replace the built-in
    templates (either or both)."""
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
