"""Settings: ``forgeline.toml`` in the workspace (or ``--config``), then environment.

Environment variables override the file: ``FORGELINE_<FIELD>`` and, for nested tables,
``FORGELINE_<TABLE>__<FIELD>`` (``FORGELINE_MODELS__DEFAULT=openai:gpt-4o-mini``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from forgeline import redaction
from forgeline.api.config import ServerConfig
from forgeline.core.events import Budget
from forgeline.errors import ConfigError
from forgeline.evolve.config import EvolveConfig
from forgeline.observability.config import TelemetryConfig
from forgeline.tools.config import (
    EmailConfig,
    FetchConfig,
    GitHubConfig,
    ResearchConfig,
    SearchConfig,
)
from forgeline.transport.config import TransportConfig

ModelRole = Literal["planner", "architect", "coder", "fixer", "reviewer"]
"""A role with a model chain of its own (``[models]``)."""
MODEL_ROLES: tuple[ModelRole, ...] = ("planner", "architect", "coder", "fixer", "reviewer")
CONFIG_FILE = "forgeline.toml"


ModelChain = str | list[str]


class ModelsConfig(BaseModel):
    """A model chain per role; a role without one uses ``default``.

    A chain is one ``provider:model`` string or a list of them: the first is the primary,
    the rest are fallbacks tried in order when a call fails (HTTP errors, timeouts, rate
    limits after the client's own retries with backoff, malformed responses).
    """

    model_config = ConfigDict(extra="forbid")

    default: ModelChain | None = None
    planner: ModelChain | None = None
    architect: ModelChain | None = None
    coder: ModelChain | None = None
    fixer: ModelChain | None = None
    reviewer: ModelChain | None = None

    def for_role(self, role: ModelRole) -> list[str]:
        value: ModelChain | None = getattr(self, role) or self.default
        if value is None:
            return []
        chain = [value] if isinstance(value, str) else list(value)
        return [spec.strip() for part in chain for spec in part.split(",") if spec.strip()]


class ProviderConfig(BaseModel):
    """An OpenAI-compatible endpoint (vLLM, llama.cpp's server, LM Studio, a proxy):
    ``[providers.NAME]`` makes ``NAME:model`` usable in model chains."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key: SecretStr | None = None
    """Prefer ``api_key_env``: keys in files end up in backups."""
    api_key_env: str | None = None


class PriceConfig(BaseModel):
    """US dollars per million tokens, for ``[prices."provider:model"]``."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


CoderBackend = Literal["llm", "aider", "codex", "claude"]
EditFormat = Literal["whole", "files", "search_replace", "diff"]


class CoderConfig(BaseModel):
    """How the coder and the fixer write code: the ``[coder]`` table.

    ``backend = "llm"`` asks the role's model (``[models]``) through pydantic-ai, answering
    in ``edit_format``; ``aider``/``codex``/``claude`` run that coding CLI in the workspace
    through the spawner. Either way the change lands through the patch engine. Values in
    ``env`` are secrets: they reach the CLI and nothing else (never an event or a log).
    """

    model_config = ConfigDict(extra="forbid")

    backend: CoderBackend = "llm"
    edit_format: EditFormat | Literal["auto"] = "auto"
    """What the model answers with: whole files as structured output (``whole``) or as
    Markdown text (``files``), search/replace blocks or a unified diff. ``auto``: ``files``
    for a chain with a local model, else ``whole`` (``format_for``)."""
    max_file_bytes: int = Field(1024 * 1024, ge=1)
    """The largest file a change may write (bytes); a larger one is refused, rolled back."""
    context_chars: int = Field(40_000, ge=0)
    """Characters of current files put in the prompt; files beyond that are only named."""
    executable: str | None = None
    """The CLI to run (a name on PATH or a path); default: the back-end's own name."""
    model: str | None = None
    """The CLI's ``--model``; default: the CLI's own choice."""
    args: tuple[str, ...] = ()
    """Extra arguments for the CLI."""
    env: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra environment for the CLI (on top of its API key variables)."""
    timeout: float = Field(900, gt=0)
    """Seconds one CLI run may take."""
    requires_key: bool = True
    """False for a CLI logged in another way (no API key variable needed)."""

    def format_for(self, local: bool) -> EditFormat:
        """The edit format for a model chain, ``local`` when it has a local model.

        A local model answers structured output under a JSON grammar, and a small one
        leaves quotes in code unescaped: the grammar then ends the string and the file
        is cut off. As Markdown text its files need no escaping.
        """
        if self.edit_format != "auto":
            return self.edit_format
        return "files" if local else "whole"


#: The named answer repairs (``llm/filters.py``), in the order they apply.
FILTERS: tuple[str, ...] = ("template_tokens", "outer_fence", "placeholders", "planned_paths")
SMALL = "small"
FRONTIER = "frontier"


class Profile(BaseModel):
    """How forgeline drives one tier of models: a ``[profiles.NAME]`` table.

    The same pipeline serves every tier; these settings say how much checking, sampling,
    planning and reviewing a model of the tier needs (docs/architecture.md §10).
    """

    model_config = ConfigDict(extra="forbid")

    models: tuple[str, ...] = ()
    """Model strings this tier is chosen for (``fnmatch`` patterns, any case), matched
    against the first model of the coder's chain when ``profile = "auto"``."""
    candidates: int = Field(1, ge=1, le=16)
    """Whole-program answers sampled for a request that goes straight to the candidates,
    and answers per plan step (each tried in the worktree, the best kept)."""
    temperature: float = Field(0.7, ge=0, le=2)
    """Sampling temperature of the candidates and the designer (each with its own seed)."""
    seed: int = Field(0, ge=0)
    """Where the sampling seeds of the candidates, the designer and the repairs start: the
    same request and seed give the same candidates on the same machine; another seed gives
    others (a request that failed may be tried again with ``seed = 100``)."""
    designers: int = Field(2, ge=0, le=5)
    """Sets of tests written from the request alone, which vote among the candidates."""
    copy_examples: bool = False
    """Ask the model to copy the request's examples the patterns missed into asserts
    (each checked against the request's text)."""
    plan: Literal["always", "multi_module"] = "always"
    """``always``: planner and architect for every request. ``multi_module``: a request
    for one module, class, command line or service in a repository without Python code
    goes straight to the candidates; the planner runs for the rest and after a direct
    attempt no candidate of which met the spec."""
    review: bool = True
    """Let the model review a change whose tests pass before it is deployed."""
    repair_rounds: int = Field(1, ge=0, le=5)
    """Rounds of one fresh repair, then a new sample of candidates, while no candidate of
    a direct attempt passes the spec's checks."""
    tools: bool = True
    """Give the coder and the fixer tools: the read-only file tools and the terminal
    (``[terminal]``'s allowlist, through the sandbox)."""
    commands: int = Field(20, ge=0, le=500)
    """Terminal commands one coder or fixer step may run (beyond that they are refused)."""
    command_seconds: float = Field(600, gt=0)
    """Seconds of terminal commands one coder or fixer step may spend in all."""
    filters: tuple[str, ...] = FILTERS
    """Named repairs applied to every code answer before it is checked
    (``llm/filters.py``): ``template_tokens``, ``outer_fence``, ``placeholders``,
    ``planned_paths``."""

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in FILTERS]
        if unknown:
            raise ValueError(
                f"unknown filter(s) {', '.join(unknown)} (known: {', '.join(FILTERS)})"
            )
        return names


def default_profiles() -> dict[str, Profile]:
    """The built-in tiers: ``small`` for local and small open models, ``frontier`` for
    the rest."""
    return {
        SMALL: Profile(
            models=("local:*", "ollama:*", "*0.5b*", "*1.5b*", "*-3b*", "*:3b*"),
            candidates=5,
            temperature=0.7,
            designers=3,
            copy_examples=True,
            plan="multi_module",
            review=False,
            repair_rounds=1,
            tools=False,
        ),
        FRONTIER: Profile(
            candidates=1,
            designers=2,
            plan="always",
            review=True,
            repair_rounds=1,
            tools=True,
        ),
    }


#: Commands the terminal tool allows by default (rules: see ``TerminalConfig``).
TERMINAL_ALLOW: tuple[str, ...] = (
    # the project's own code, tests and linters (in the workspace's venv)
    "python",
    "python3",
    "pytest",
    "ruff check",
    "mypy",
    # packages: wheels from the index into the workspace's venv (see docs/security.md)
    "pip install",
    "pip list",
    "pip show",
    "pip freeze",
    "pip check",
    # looking around the workspace
    "ls",
    "cat",
    "head",
    "tail",
    "wc",
    "grep",
    "find",
    "tree",
    "diff",
    "file",
    "stat",
    "du",
    "pwd",
    "echo",
    "sort",
    "uniq",
    # git, read-only
    "git status",
    "git diff",
    "git log",
    "git show",
    "git ls-files",
    "git blame",
    "git grep",
)

#: Commands the terminal tool refuses by default, whatever ``allow`` says.
TERMINAL_DENY: tuple[str, ...] = (
    # running other programs (or writing files) behind the allowlist's back
    "find ... -exec*",
    "find ... -ok*",
    "find ... -delete",
    "find ... -fprint*",
    "find ... -fls",
    "git ... --output*",
    "git ... --ext-diff",
    "git ... --textconv",
    # git beyond reading: history, remotes and configuration are forgeline's
    "git -c",
    "git -C",
    "git push",
    "git remote",
    "git config",
    "git credential*",
    # shells, privilege and the network
    "sh",
    "bash",
    "dash",
    "zsh",
    "sudo",
    "su",
    "doas",
    "curl",
    "wget",
    "ssh",
    "scp",
    "nc",
)


class TerminalConfig(BaseModel):
    """What the terminal tool lets agents run: the ``[terminal]`` table.

    A rule is a command prefix written like a command line (shell quoting allowed), one
    word per argument: ``"git status"`` allows ``git status --short``. Words may use the
    wildcards ``*``, ``?`` and ``[...]``; ``...`` stands for any number of arguments
    (``"find ... -exec*"``). The first word is compared with the program's name (a path's
    last part, unless the word has a ``/``). A command matching a ``deny`` rule is refused
    whatever ``allow`` says; otherwise the first ``allow`` rule that matches lets it run;
    nothing matching is refused. ``allow``/``deny`` replace the defaults,
    ``extra_allow``/``extra_deny`` add to them.
    """

    model_config = ConfigDict(extra="forbid")

    allow: tuple[str, ...] = TERMINAL_ALLOW
    deny: tuple[str, ...] = TERMINAL_DENY
    extra_allow: tuple[str, ...] = ()
    extra_deny: tuple[str, ...] = ()
    timeout: float = Field(300, gt=0)
    """Seconds one command may run."""
    output_chars: int = Field(8_000, ge=0)
    """Characters of a command's output kept (its tail) in the answer and the event."""
    confine_paths: bool = True
    """Refuse arguments that are paths outside the workspace (absolute, or ``..`` out)."""
    installs: bool = True
    """Let ``pip install`` run: through the package policy and the checked install path
    (``[packages]``); the package lasts until the next sync of the declared packages."""

    @field_validator("allow", "deny", "extra_allow", "extra_deny")
    @classmethod
    def _rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        for rule in rules:
            try:
                words = shlex.split(rule)
            except ValueError as exc:
                raise ValueError(f"terminal rule {rule!r}: {exc}") from exc
            if not words or words[0] == "...":
                raise ValueError(f"terminal rule {rule!r} must start with a program name")
        return rules

    @property
    def allow_rules(self) -> tuple[str, ...]:
        return (*self.allow, *self.extra_allow)

    @property
    def deny_rules(self) -> tuple[str, ...]:
        return (*self.deny, *self.extra_deny)


#: Packages a project may declare by default: common web, data, command-line and test
#: libraries (compared by normalized name; see ``PackagesConfig``).
PACKAGES_ALLOW: tuple[str, ...] = (
    # web services and clients
    "fastapi", "starlette", "uvicorn", "flask", "werkzeug", "jinja2", "itsdangerous",
    "markupsafe", "django", "gunicorn", "python-multipart", "websockets", "aiohttp",
    "httpx", "requests", "urllib3", "beautifulsoup4", "lxml", "pydantic",
    "pydantic-settings", "email-validator", "sqlalchemy", "alembic", "psycopg",
    "psycopg2-binary", "redis", "pyjwt", "passlib", "bcrypt", "cryptography",
    # data
    "numpy", "pandas", "scipy", "matplotlib", "seaborn", "scikit-learn", "statsmodels",
    "sympy", "networkx", "polars", "pyarrow", "openpyxl", "xlsxwriter", "pillow",
    "tabulate", "python-dateutil", "pytz", "tzdata", "pyyaml", "toml", "tomli", "tomli-w",
    "orjson", "ujson", "simplejson", "jsonschema", "markdown", "regex", "chardet",
    "charset-normalizer", "arrow", "pendulum", "attrs", "cachetools", "tenacity",
    "python-dotenv", "platformdirs", "packaging", "anyio", "typing-extensions",
    "structlog", "loguru", "marshmallow",
    # command lines
    "click", "typer", "rich", "colorama", "tqdm", "prompt-toolkit", "questionary",
    "docopt",
    # tests
    "pytest", "pytest-asyncio", "pytest-mock", "pytest-cov", "coverage", "hypothesis",
    "freezegun", "responses", "respx", "requests-mock",
)  # fmt: skip

#: Packages refused by default whatever ``allow`` says.
PACKAGES_DENY: tuple[str, ...] = (
    # unmaintained since 2013 with known vulnerabilities; cryptography does its job
    "pycrypto",
)

_PACKAGE_PATTERN = re.compile(r"^[A-Za-z0-9*?\[\]][A-Za-z0-9._*?\[\]-]*$")


class PackagesConfig(BaseModel):
    """Which packages a task's project may get, from where: the ``[packages]`` table.

    The declared packages (``requirements.txt``, ``pyproject.toml``) are checked by name
    before anything is fetched: a ``deny`` entry refuses the package (and also any
    package they need); a name one edit away from a popular package is refused as
    typosquat-shaped unless ``allow``/``extra_allow`` names it exactly; a declared name no
    ``allow`` entry matches is refused. Entries are names or patterns with ``*``, ``?``
    and ``[...]``, compared with the normalized name (``Python_Dateutil`` is
    ``python-dateutil``); ``allow = ["*"]`` allows any name. ``allow``/``deny`` replace the
    defaults, ``extra_allow``/``extra_deny`` add to them.
    """

    model_config = ConfigDict(extra="forbid")

    allow: tuple[str, ...] = PACKAGES_ALLOW
    deny: tuple[str, ...] = PACKAGES_DENY
    extra_allow: tuple[str, ...] = ()
    extra_deny: tuple[str, ...] = ()
    max_wheels: int = Field(60, ge=1)
    """The most wheels one declared set may bring in (the packages and all they need)."""
    max_total_mb: float = Field(300, gt=0)
    """The most megabytes (10^6 bytes) those wheels may weigh together."""
    offline: bool = False
    """Install only from the repository's wheelhouse (``.forgeline/wheels``): nothing is
    downloaded, so a package missing there fails with pip's reason."""
    index_url: str | None = None
    """The package index to download from (default: pip's own configuration)."""
    use_index: bool = True
    """False: download only from ``find_links``."""
    find_links: tuple[str, ...] = ()
    """Extra places (directories or URLs) with wheels to download from."""
    timeout: float = Field(600, gt=0)
    """Seconds one download, resolution or install may take."""

    @field_validator("allow", "deny", "extra_allow", "extra_deny")
    @classmethod
    def _names(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            if not _PACKAGE_PATTERN.match(entry):
                raise ValueError(f"package entry {entry!r} is not a package name or pattern")
        return entries

    @property
    def allow_entries(self) -> tuple[str, ...]:
        return (*self.allow, *self.extra_allow)

    @property
    def deny_entries(self) -> tuple[str, ...]:
        return (*self.deny, *self.extra_deny)


class DeployConfig(BaseModel):
    """How the deployer ships the app a task built: the ``[deploy]`` table (note 001's
    preview modes).

    ``preview`` (default): a cli or library is smoke-run once, a web app starts as a
    preview in the sandbox. ``compose_only``: the same, and the deployer also writes a
    ``Dockerfile``, ``compose.yaml`` and ``.dockerignore`` for the app (its packages, its
    command, its health check; checked against the Compose specification) and commits
    them. ``docker_in_docker``: writes them and runs them with the Docker engine
    (``docker_host``, else ``DOCKER_HOST``, else the local socket) instead of the sandbox;
    without an engine the deploy fails, saying so.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["preview", "compose_only", "docker_in_docker"] = "preview"
    docker_host: str | None = None
    """The Docker engine ``docker_in_docker`` uses (``unix:///var/run/docker.sock``,
    ``tcp://host:2376``); unset: ``DOCKER_HOST``, else the local socket if there is one."""
    docker: str = "docker"
    """The Docker CLI (with its compose plugin): a name on PATH or a path."""
    base_image: str | None = None
    """The image the Dockerfile starts from; default ``python:<forgeline's X.Y>-slim``."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FORGELINE_", env_nested_delimiter="__", extra="forbid"
    )

    models: ModelsConfig = Field(default_factory=ModelsConfig)
    local_model: str = "qwen2.5-coder-1.5b"
    """The offline model used when no model is configured (``local:<name>``)."""
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    """``[budget]``: a hard cap per task (``tokens``, ``usd``); a call that would cross it
    pauses the task until ``forgeline approve``."""
    cache: bool = True
    """Answer a call from the response cache when the same model got the same messages."""
    loop_limit: int = Field(3, ge=2, le=100)
    """The same tool call or rejected answer this many times in one stage stops it."""
    context_tokens: int = Field(24_000, ge=500)
    """A role's conversation above this (estimated) size is compacted."""
    trim_chars: int = Field(4_000, ge=200)
    """Long tool output and error logs are cut to their last this many characters when
    a conversation is compacted."""
    model_timeout: float = Field(120, gt=0)
    """Seconds one model request may take before it counts as failed (and falls back)."""
    local_timeout: float = Field(1800, gt=0)
    """``model_timeout`` for chains with a ``local:`` model: a CPU answers slowly."""
    model_retries: int = Field(2, ge=0, le=10)
    """Retries with backoff of one request (rate limits, 5xx) before falling back."""
    coder: CoderConfig = Field(default_factory=CoderConfig)
    terminal: TerminalConfig = Field(default_factory=TerminalConfig)
    packages: PackagesConfig = Field(default_factory=PackagesConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    workspace_venv: bool = True
    """Run the workspace's tests and programs with its repository's own venv
    (``.forgeline/venv``) rather than forgeline's interpreter."""
    store: str | None = None
    """Event store URL; default ``sqlite:///<workspace>/.forgeline/forgeline.db``."""
    workspaces_root: Path | None = None
    """The directory the repositories tasks work on live in. Events name a task's
    repository by its path relative to it, and its worktree follows from that and the
    task id. Default (the CLI): the directory holding ``--workspace``."""
    mode: Literal["event", "sequential"] = "event"
    broker: str | None = None
    """RabbitMQ URL (``amqp://user:password@host:5672/vhost``). Set: work is handed to
    ``forgeline worker`` processes through the broker (distributed mode, which needs a
    Postgres store); unset: the stages run in the process that drives the task."""
    transport: TransportConfig = Field(default_factory=TransportConfig)
    max_fix_rounds: int = Field(3, ge=0, le=50)
    max_review_rounds: int = Field(3, ge=0, le=50)
    profile: str = "auto"
    """The model tier whose settings a task uses (``[profiles.NAME]``): ``auto`` picks the
    first tier whose ``models`` patterns match the coder's model, else ``frontier``."""
    profiles: dict[str, Profile] = Field(default_factory=default_profiles)
    """Settings per model tier; a table given for ``small`` or ``frontier`` changes only
    the keys it names."""
    output_retries: int = Field(3, ge=0, le=20)
    """How often a role may answer with invalid output before its stage fails."""
    require_sandbox: bool = False
    """Refuse to run untrusted code without the sandbox, even with unsafe_no_sandbox."""
    unsafe_no_sandbox: bool = False
    """Run untrusted code as plain processes when no sandbox is available (loudly)."""
    test_timeout: float = Field(300, gt=0)
    deploy_timeout: float = Field(60, gt=0)
    progress_interval: float = Field(2.0, gt=0, le=60)
    """Seconds between a running stage's ``stage.progress`` events (a stage done sooner
    records none)."""
    search: SearchConfig = Field(default_factory=SearchConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    research: ResearchConfig = Field(default_factory=ResearchConfig)
    github: GitHubConfig = Field(default_factory=GitHubConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    evolve: EvolveConfig = Field(default_factory=EvolveConfig)
    """``[evolve]``: the evolution daemon's signals and guardrails (docs/evolve.md)."""

    def store_url(self, workspace: Path) -> str:
        return self.store or f"sqlite:///{workspace / '.forgeline' / 'forgeline.db'}"

    @field_validator("profiles", mode="before")
    @classmethod
    def _merged_profiles(cls, value: Any) -> Any:
        """The built-in tiers with the keys a table changes (``[profiles.small]
        candidates = 3`` keeps every other setting of ``small``)."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {k: p.model_dump() for k, p in default_profiles().items()}
        for name, table in value.items():
            if isinstance(table, Profile):
                table = table.model_dump(exclude_unset=True)
            if isinstance(table, dict):
                merged[name] = {**merged.get(name, {}), **table}
            else:
                merged[name] = table
        return merged

    @model_validator(mode="after")
    def _known_profile(self) -> Settings:
        if self.profile != "auto" and self.profile not in self.profiles:
            known = ", ".join(["auto", *self.profiles])
            raise ValueError(f"profile {self.profile!r} is not a tier ({known})")
        return self

    def tier(self, model: str) -> tuple[str, Profile]:
        """The tier (its name and settings) for a coder whose model chain is ``model``
        (``local:qwen2.5-coder-1.5b``, ``openai:gpt-4o, anthropic:...``): ``profile`` when
        it names one, else the first tier with a ``models`` pattern matching the chain's
        first model, else ``frontier``."""
        if self.profile != "auto":
            return self.profile, self.profiles[self.profile]
        primary = model.split(",")[0].strip().lower()
        for name, profile in self.profiles.items():
            if any(fnmatchcase(primary, pattern.lower()) for pattern in profile.models):
                return name, profile
        return FRONTIER, self.profiles[FRONTIER]


class _FileSource(PydanticBaseSettingsSource):
    """Values read from forgeline.toml, below the environment and the flags."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.data


def load_settings(workspace: Path, config: Path | None = None, **overrides: Any) -> Settings:
    """Flags (``overrides``) beat the environment, which beats the config file.

    Anything wrong is a ``ConfigError`` naming the file or the variable and the fix. The
    secrets the settings name are handed to the process's redactor (``forgeline.redaction``),
    so they never reach an event, a log line or a message.
    """
    path = config or workspace / CONFIG_FILE
    data = _read_config(path, required=config is not None)

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _FileSource(settings_cls, data))

    try:
        settings: Settings = FileSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration ({path}): {problems}") from exc
    except SettingsError as exc:
        raise ConfigError(_environment_problem(exc)) from exc
    redaction.remember(redaction.secrets_of(settings))
    return settings


def _read_config(path: Path, *, required: bool) -> dict[str, Any]:
    """The config file's table; ``{}`` when an optional one is absent."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory: name a TOML file (--config FILE)")
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


_SETTINGS_FIELD = re.compile(r'field "(?P<field>[^"]+)"')


def _environment_problem(exc: SettingsError) -> str:
    """What a ``SettingsError`` means: an environment variable holding a table or a list
    that is not valid JSON. Names the variable (never its value: it may be a secret)."""
    match = _SETTINGS_FIELD.search(str(exc))
    field = match["field"] if match else None
    prefix = f"FORGELINE_{field}".upper() if field else "FORGELINE_"
    names = [
        name
        for name in sorted(os.environ)
        if name.upper() == prefix or name.upper().startswith(f"{prefix}__")
    ]
    broken = [
        (name, reason)
        for name in names
        if _holds_json(name.upper().removeprefix("FORGELINE_").split("__"))
        and (reason := _json_problem(os.environ[name]))
    ]
    if broken:
        said = "; ".join(f"{name} is not valid JSON ({reason})" for name, reason in broken)
    else:
        said = f"an environment variable for {field or 'a setting'} cannot be read ({exc})"
    return (
        f"{said}. A table or a list in an environment variable is written as JSON, e.g. "
        'FORGELINE_MODELS=\'{"default": "openai:gpt-4o-mini"}\' or '
        "FORGELINE_CODER__ARGS='[\"--no-stream\"]'; a single key has a variable of its own, "
        "e.g. FORGELINE_MODELS__DEFAULT=openai:gpt-4o-mini"
    )


def _holds_json(keys: list[str]) -> bool:
    """Whether the setting at ``keys`` (``["CODER", "ARGS"]``) is a table or a list, which
    the environment gives as JSON (a plain string setting takes any text)."""
    annotation: Any = Settings
    for key in keys:
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(key.lower())
            if field is None:
                return False
            annotation = field.annotation
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            return False
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return (
        all(_is_table(a) for a in options if a is not type(None))
        if options
        else _is_table(annotation)
    )


def _is_table(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return get_origin(annotation) in (dict, list, tuple, set, frozenset)


def _json_problem(value: str) -> str | None:
    try:
        json.loads(value)
    except ValueError as exc:
        return str(exc)
    return None
