"""A provider key is never recorded or printed (issue 13, finding 1).

A provider's error body may echo the key it was sent: a 401 "Incorrect API key provided:
<key>", a 500 that lists the request headers. The run goes through the command line
against a local OpenAI-compatible server scripted to answer so; afterwards neither the
store's files nor anything printed contains the key, and the failure is still explained.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pydantic_ai.models
import pytest
from typer.testing import CliRunner

from forgeline.cli.app import app
from forgeline.errors import ConfigError
from tests.llm.openai_server import OpenAIStub

# Shaped like no well-known key: only the settings tell the redactor it is one.
KEY = "stub-provider-key-0123456789abcdef"

runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("STUB_KEY", KEY)
    # The suite forbids real model requests; these go to a server inside the test.
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)


def workspace(tmp_path: Path, base_url: str, model: str = "stub:gpt") -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "forgeline.toml").write_text(
        "model_retries = 0\n"
        f'[providers.stub]\nbase_url = "{base_url}"\napi_key_env = "STUB_KEY"\n'
        f'[models]\ndefault = "{model}"\n'
    )
    return ws


def store_bytes(ws: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (ws / ".forgeline").glob("forgeline.db*"))


@pytest.mark.parametrize("mode", ["sequential", "event"])
@pytest.mark.parametrize("status", [401, 500])
def test_an_error_body_echoing_the_key_is_stored_and_printed_redacted(
    tmp_path: Path, mode: str, status: int
) -> None:
    with OpenAIStub([("echo", status)]) as stub:
        ws = workspace(tmp_path, stub.base_url)
        result = runner.invoke(app, ["run", "build x", "-w", str(ws), "--mode", mode])
    assert stub.requests[0]["headers"]["authorization"] == f"Bearer {KEY}", "the key was sent"
    assert result.exit_code == 1
    assert KEY not in result.output
    assert "Incorrect API key provided: [redacted]" in result.output
    assert f"status_code: {status}" in result.output, "the failure is still explained"

    raw = store_bytes(ws)
    assert raw and KEY.encode() not in raw
    with sqlite3.connect(ws / ".forgeline" / "forgeline.db") as db:
        rows = dict(db.execute("SELECT type, data FROM events"))
    for kind in ("stage.failed", "task.failed", "change.failed"):
        assert "Incorrect API key provided: [redacted]" in rows[kind], kind

    shown = runner.invoke(app, ["status", _task_id(result.output), "-w", str(ws)])
    assert shown.exit_code == 0 and KEY not in shown.output
    assert "[redacted]" in shown.output


def failing_factory() -> None:
    """A ``function:`` model whose construction fails with a message naming the key, as a
    provider SDK's error may."""
    import os

    raise ConfigError(f"login refused for key {os.environ['STUB_KEY']}")


def test_an_error_message_printed_by_the_command_line_is_redacted(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "http://127.0.0.1:9/v1", f"function:{__name__}:failing_factory")
    result = runner.invoke(app, ["run", "build x", "-w", str(ws)])
    assert result.exit_code == 2
    assert "login refused for key [redacted]" in result.output
    assert KEY not in result.output


def _task_id(output: str) -> str:
    first = next(line for line in output.splitlines() if line.startswith("task "))
    return first.split()[1]
