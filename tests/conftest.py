"""Shared fixtures. Each concern lives in its own section; add new ones below."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pydantic_ai.models
import pytest

from forgeline.sandbox.bwrap import sandbox_available

# Tests never call real models.
pydantic_ai.models.ALLOW_MODEL_REQUESTS = False

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ postgres

POSTGRES_SCRIPT = REPO / "scripts" / "postgres.sh"
POSTGRES_URL_ENV = "FORGELINE_TEST_POSTGRES_URL"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_postgres(data_dir: Path, port: int) -> str:
    """Start a throwaway cluster with scripts/postgres.sh and return its URL.

    Fails the test (never skips) with the script's own message when it cannot start.
    """
    try:
        done = subprocess.run(
            ["bash", str(POSTGRES_SCRIPT), "start", str(data_dir), str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot start the test Postgres cluster: {exc}", pytrace=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        pytest.fail(
            f"cannot start the test Postgres cluster (scripts/postgres.sh exited"
            f" {done.returncode}); set {POSTGRES_URL_ENV} to use another server.\n"
            f"{done.stderr.strip()}",
            pytrace=False,
        )
    return lines[-1]


def stop_postgres(data_dir: Path) -> None:
    subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), "stop", str(data_dir)],
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A Postgres URL for the ``postgres`` tests: ``$FORGELINE_TEST_POSTGRES_URL``, or a
    throwaway cluster started for this session and stopped at its end."""
    if url := os.environ.get(POSTGRES_URL_ENV):
        yield url
        return
    # Not pytest's tmp_path: its parents are private to root, and the server may run as
    # the unprivileged postgres user.
    data_dir = Path(tempfile.mkdtemp(prefix="forgeline-pg-"))
    try:
        yield start_postgres(data_dir, free_port())
    finally:
        stop_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


# ------------------------------------------------------------------ sandbox


@pytest.fixture(scope="session")
def bwrap_ready() -> None:
    """Fail (never skip) every test that needs bubblewrap when it cannot work here."""
    reason = sandbox_available()
    if reason is not None:
        pytest.fail(
            f"the bubblewrap sandbox is not usable on this machine: {reason}. "
            "Install the Debian package bubblewrap (scripts/test does) and allow user "
            "namespaces.",
            pytrace=False,
        )


# ------------------------------------------------------------------ rabbitmq

RABBITMQ_SCRIPT = REPO / "scripts" / "rabbitmq.sh"


class RabbitNode:
    """A throwaway RabbitMQ node (scripts/rabbitmq.sh) in a directory of its own, which
    keeps its ports, queues and messages across ``stop``/``start`` (a broker restart)."""

    def __init__(self) -> None:
        # Not pytest's tmp_path: the node runs as the unprivileged rabbitmq user.
        self.dir = Path(tempfile.mkdtemp(prefix="forgeline-rmq-"))
        self.url = ""

    def start(self) -> str:
        """Start the node and return its URL; fail the test (never skip) when it cannot."""
        try:
            done = subprocess.run(
                ["bash", str(RABBITMQ_SCRIPT), "start", str(self.dir)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"cannot start the test RabbitMQ node: {exc}", pytrace=False)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            pytest.fail(
                f"cannot start the test RabbitMQ node (scripts/rabbitmq.sh exited "
                f"{done.returncode}); install the Debian package rabbitmq-server "
                f"(scripts/test does).\n{done.stderr.strip()}",
                pytrace=False,
            )
        self.url = lines[-1]
        return self.url

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(RABBITMQ_SCRIPT), "stop", str(self.dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbitmq_node() -> Iterator[RabbitNode]:
    """A RabbitMQ node for the session's broker tests, stopped (with its epmd) at the end."""
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


# ------------------------------------------------------------------ packages


#: The packages of the FastAPI service the package tests build: the framework, its test
#: client and the server that runs it.
WEB_PACKAGES = ("fastapi", "httpx", "uvicorn")


@pytest.fixture(scope="session")
def web_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links directory with wheels of ``WEB_PACKAGES`` and all they need, re-packed
    from forgeline's own environment (the dev extra installs them): installed offline with
    ``use_index = false``, never from an index."""
    from tests.workspace.wheels import repack_closure

    links = tmp_path_factory.mktemp("web-wheels")
    repack_closure(WEB_PACKAGES, links)
    return links
