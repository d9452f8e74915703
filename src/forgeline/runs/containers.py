"""Deploy files for the app a task built, and running them (note 001's preview modes).

``deploy_files`` writes a ``Dockerfile``, a ``compose.yaml`` and a ``.dockerignore`` for a
``cli`` or ``web`` ``RunSpec`` (a library has nothing to run): the image installs exactly
the packages the task's tests ran with (``name==version`` for each wheel of the venv's
last sync, wheels only), copies the workspace and runs the spec's command; a web app
gets its port published and its health path as the container's health check. The compose
file is checked against the Compose specification's JSON schema (vendored in
``schemas/compose-spec.json``, Apache-2.0, see ``schemas/README.md``) before it is
written: no Docker engine is needed to write or check them.

``compose_up`` runs them with a Docker engine (``docker compose up --build --wait``) and
checks the health path on the published port; ``docker_engine`` says whether one is
configured, and why not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from forgeline.config import DeployConfig
from forgeline.core.events import PackagePin, RunSpec
from forgeline.errors import ForgelineError
from forgeline.runs.preview import DeployResult, free_port, probe_health
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import tail_text

__all__ = [
    "APP_PORT",
    "DEPLOY_FILES",
    "DeployFileError",
    "compose_up",
    "deploy_files",
    "docker_engine",
    "validate_compose",
]

#: The port a web app listens on in its container.
APP_PORT = 8000
#: The files ``deploy_files`` writes, relative to the workspace.
DEPLOY_FILES = ("Dockerfile", "compose.yaml", ".dockerignore")
#: What the image leaves out of the workspace.
DOCKERIGNORE = (".git", ".forgeline", "__pycache__", "*.pyc", ".pytest_cache", ".venv")
#: Where a server is told to listen on every interface of its container.
_LISTEN_ENV = {"HOST": "0.0.0.0", "UVICORN_HOST": "0.0.0.0", "FLASK_RUN_HOST": "0.0.0.0"}
_LOOPBACK = ("127.0.0.1", "localhost")
_DEFAULT_SOCKET = Path("/var/run/docker.sock")


class DeployFileError(ForgelineError):
    """Deploy files could not be made (a compose file the schema refuses)."""


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("forgeline.runs").joinpath("schemas/compose-spec.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_compose(document: dict[str, Any]) -> None:
    """Refuse (``DeployFileError``) a compose document the Compose specification's schema
    does not accept, naming each problem and where it is."""
    validator = jsonschema.Draft7Validator(_schema())
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    if problems:
        raise DeployFileError(
            "the compose file does not follow the Compose specification: " + "; ".join(problems[:5])
        )


def _container_command(spec: RunSpec) -> list[str]:
    """The spec's command inside the container: the port fixed, loopback addresses made
    every interface (a server bound to 127.0.0.1 in a container cannot be reached)."""
    return [
        "0.0.0.0" if arg in _LOOPBACK else arg.replace("{port}", str(APP_PORT))
        for arg in spec.command
    ]


def _health_probe(path: str) -> list[str]:
    url = f"http://127.0.0.1:{APP_PORT}{path if path.startswith('/') else '/' + path}"
    code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=4)"
    return ["CMD", "python", "-c", code]


def _dockerfile(spec: RunSpec, pins: tuple[PackagePin, ...], base_image: str) -> str:
    lines = [
        "# Written by forgeline's deployer: the app with the packages its tests ran with.",
        f"FROM {base_image}",
        "WORKDIR /app",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
    ]
    if pins:
        packages = " \\\n    ".join(f"{p.name}=={p.version}" for p in pins)
        lines.append(f"RUN pip install --no-cache-dir --only-binary=:all: \\\n    {packages}")
    lines.append("COPY . .")
    if spec.kind == "web":
        lines.append(f"EXPOSE {APP_PORT}")
        lines.append(
            "HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD "
            + json.dumps(_health_probe(spec.health_path)[1:])
        )
    lines.append("CMD " + json.dumps(_container_command(spec)))
    return "\n".join(lines) + "\n"


def _compose(spec: RunSpec, project: str) -> dict[str, Any]:
    service: dict[str, Any] = {"build": "."}
    if spec.kind == "web":
        service["ports"] = [f"${{APP_PORT:-{APP_PORT}}}:{APP_PORT}"]
        service["environment"] = {"PORT": str(APP_PORT), **_LISTEN_ENV}
        service["healthcheck"] = {
            "test": _health_probe(spec.health_path),
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "5s",
        }
    return {"name": project, "services": {"app": service}}


def project_name(text: str) -> str:
    """A compose project name (lower case letters, digits, ``-`` and ``_``)."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:60] or "app"


def deploy_files(
    spec: RunSpec,
    pins: tuple[PackagePin, ...],
    *,
    project: str,
    base_image: str | None = None,
) -> dict[str, str]:
    """The deploy files for ``spec`` (path -> content), the compose file checked against
    the schema; none for a library or a spec without a command."""
    if spec.kind == "library" or not spec.command:
        return {}
    image = base_image or f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    compose = _compose(spec, project_name(project))
    validate_compose(compose)
    header = "# Written by forgeline's deployer; `docker compose up --build` runs the app.\n"
    return {
        "Dockerfile": _dockerfile(spec, pins, image),
        "compose.yaml": header + yaml.safe_dump(compose, sort_keys=False),
        ".dockerignore": "\n".join(DOCKERIGNORE) + "\n",
    }


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Engine:
    """A Docker engine to run deploy files with: its address and the CLI."""

    host: str | None
    cli: str


def docker_engine(config: DeployConfig) -> Engine | str:
    """The configured Docker engine, or why there is none (a sentence saying what to set)."""
    host = config.docker_host or os.environ.get("DOCKER_HOST")
    if host is None and not _DEFAULT_SOCKET.exists():
        return (
            "no Docker engine is configured: docker_in_docker needs one. Set [deploy] "
            "docker_host (or DOCKER_HOST) to the engine's address, or use "
            'mode = "compose_only" to write the files without running them'
        )
    cli = shutil.which(config.docker)
    if cli is None:
        return f"the Docker CLI {config.docker!r} is not installed ([deploy] docker)"
    return Engine(host, cli)


async def compose_up(
    spec: RunSpec, workspace: Path, engine: Engine, *, project: str, timeout: float
) -> DeployResult:
    """``docker compose up --build --wait`` the workspace's deploy files on a free host
    port, then check the health path there; the app keeps running (``docker compose -p
    <project> down`` stops it)."""
    port = free_port()
    name = project_name(project)
    env = {"APP_PORT": str(port), **({"DOCKER_HOST": engine.host} if engine.host else {})}
    argv = [
        engine.cli,
        "compose",
        "-p",
        name,
        "-f",
        "compose.yaml",
        "up",
        "-d",
        "--build",
        "--wait",
    ]
    header = f"$ {' '.join(argv[1:])}\n"
    run = await LocalSpawner().run(argv, cwd=workspace, env=env, timeout=timeout)
    if not run.ok:
        return DeployResult(ok=False, kind=spec.kind, output=tail_text(header + run.output, 8_000))
    if spec.kind != "web":
        return DeployResult(ok=True, kind=spec.kind, output=header + "started\n")
    path = spec.health_path if spec.health_path.startswith("/") else "/" + spec.health_path
    status = await probe_health(port, path, timeout=5)
    url = f"http://127.0.0.1:{port}"
    ok = status is not None and 200 <= status < 300
    said = f"HTTP {status}" if status is not None else "nothing"
    stop = f"docker compose -p {name} down"
    output = f"{header}{url}{path} answered {said}; stop it with `{stop}`\n"
    return DeployResult(ok=ok, kind="web", url=f"{url}/" if ok else None, output=output)
