"""Deploy files: what the Dockerfile and the compose file say, the compose file checked
against the Compose specification's schema, and running them with a Docker engine (a
stand-in ``docker`` CLI started by the test, since no engine runs here)."""

from __future__ import annotations

import json
import os
import stat
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from forgeline.config import DeployConfig
from forgeline.core.events import PackagePin, RunSpec
from forgeline.runs import containers
from forgeline.runs.containers import (
    DeployFileError,
    compose_up,
    deploy_files,
    docker_engine,
    validate_compose,
)

WEB = RunSpec(
    kind="web",
    command=("python", "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "{port}"),
    health_path="/health",
)
PINS = (
    PackagePin(name="fastapi", version="0.115.0", sha256="0" * 64),
    PackagePin(name="uvicorn", version="0.30.0", sha256="1" * 64),
)


def test_a_web_app_gets_a_dockerfile_and_a_compose_file_with_its_health_check() -> None:
    files = deploy_files(WEB, PINS, project="KV Service!", base_image="python:3.12-slim")
    assert set(files) == {"Dockerfile", "compose.yaml", ".dockerignore"}
    dockerfile = files["Dockerfile"]
    assert "FROM python:3.12-slim" in dockerfile
    assert "fastapi==0.115.0" in dockerfile and "uvicorn==0.30.0" in dockerfile
    assert "--only-binary=:all:" in dockerfile and "EXPOSE 8000" in dockerfile
    # The command listens on every interface of the container, on its port.
    command = json.loads(dockerfile.split("\nCMD ", 1)[1])
    assert command == ["python", "-m", "uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"]
    assert "HEALTHCHECK" in dockerfile and "http://127.0.0.1:8000/health" in dockerfile
    compose = yaml.safe_load(files["compose.yaml"])
    validate_compose(compose)  # what was written is what the schema accepts
    app = compose["services"]["app"]
    assert compose["name"] == "kv-service"
    assert app["build"] == "." and app["ports"] == ["${APP_PORT:-8000}:8000"]
    assert app["healthcheck"]["test"][:2] == ["CMD", "python"]
    assert ".forgeline" in files[".dockerignore"] and ".git" in files[".dockerignore"]


def test_a_cli_gets_its_command_and_a_library_nothing() -> None:
    cli = deploy_files(RunSpec(kind="cli", command=("python", "todo.py", "list")), (), project="t")
    assert json.loads(cli["Dockerfile"].split("\nCMD ", 1)[1]) == ["python", "todo.py", "list"]
    assert "RUN pip install" not in cli["Dockerfile"] and "EXPOSE" not in cli["Dockerfile"]
    assert "ports" not in yaml.safe_load(cli["compose.yaml"])["services"]["app"]
    assert (
        deploy_files(RunSpec(kind="library", command=("python", "-c", "1")), (), project="t") == {}
    )


def test_a_compose_file_the_specification_refuses_is_not_written() -> None:
    bad = {"services": {"app": {"build": ".", "ports": [{"published": "x", "bogus": 1}]}}}
    with pytest.raises(DeployFileError, match="services/app/ports/0"):
        validate_compose(bad)
    with pytest.raises(DeployFileError, match="services/app/restart: 5 is not of type 'string'"):
        validate_compose({"services": {"app": {"image": "x", "restart": 5}}})


def test_docker_in_docker_says_when_no_engine_is_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(containers, "_DEFAULT_SOCKET", tmp_path / "no-docker.sock")
    said = docker_engine(DeployConfig(mode="docker_in_docker"))
    assert isinstance(said, str) and "no Docker engine is configured" in said
    assert "docker_host" in said
    said = docker_engine(DeployConfig(docker_host="tcp://127.0.0.1:1", docker="no-such-docker-cli"))
    assert isinstance(said, str) and "'no-such-docker-cli' is not installed" in said


# A stand-in for the Docker CLI: `compose ... up` serves the app's health path on
# $APP_PORT (a python http.server over a directory holding "health"), `down` stops it.
FAKE_DOCKER = """#!{python}
import os, pathlib, signal, subprocess, sys
state = pathlib.Path({state!r})
state.mkdir(exist_ok=True)
(state / "argv").write_text(" ".join(sys.argv[1:]) + "\\n" + os.environ.get("DOCKER_HOST", ""))
if "up" in sys.argv:
    (state / "www").mkdir(exist_ok=True)
    (state / "www" / "health").write_text("ok")
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", os.environ["APP_PORT"], "--bind", "127.0.0.1",
         "--directory", str(state / "www")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    (state / "pid").write_text(str(server.pid))
    import socket, time
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", int(os.environ["APP_PORT"])), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
elif "down" in sys.argv:
    os.kill(int((state / "pid").read_text()), signal.SIGTERM)
"""


async def test_docker_in_docker_runs_the_files_and_checks_the_health_path(tmp_path: Path) -> None:
    state = tmp_path / "docker-state"
    cli = tmp_path / "docker"
    cli.write_text(FAKE_DOCKER.format(python=sys.executable, state=str(state)))
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    engine = docker_engine(DeployConfig(docker_host="tcp://127.0.0.1:2375", docker=str(cli)))
    assert not isinstance(engine, str)
    workspace = tmp_path / "app"
    workspace.mkdir()
    for name, text in deploy_files(WEB, PINS, project="kv").items():
        (workspace / name).write_text(text)
    result = await compose_up(WEB, workspace, engine, project="kv", timeout=60)
    try:
        assert result.ok, result.output
        argv, host = (state / "argv").read_text().splitlines()
        assert argv == "compose -p kv -f compose.yaml up -d --build --wait"
        assert host == "tcp://127.0.0.1:2375"
        assert result.url is not None and "docker compose -p kv down" in result.output
        with urllib.request.urlopen(result.url + "health", timeout=5) as response:
            assert response.read() == b"ok"
    finally:
        os.kill(int((state / "pid").read_text()), 15)
