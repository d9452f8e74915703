"""A provider that cannot be reached, times out or fails is named in the failure, with
where it was asked, instead of "the model's output was still invalid after retries"
(issue 13). The providers are a port nothing listens on and a local OpenAI-compatible
server started by the test."""

from __future__ import annotations

import socket
from pathlib import Path

import pydantic_ai.models
import pytest
from typer.testing import CliRunner

from forgeline.cli.app import app
from tests.llm.openai_server import OpenAIStub

runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setenv("STUB_KEY", "stub-key")
    # The suite forbids real model requests; these go to this machine only.
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(tmp_path: Path, providers: dict[str, str], chain: str) -> str:
    ws = tmp_path / "ws"
    ws.mkdir()
    text = "model_retries = 0\nmodel_timeout = 1\n"
    for name, url in providers.items():
        text += f'[providers.{name}]\nbase_url = "{url}"\napi_key_env = "STUB_KEY"\n'
    (ws / "forgeline.toml").write_text(text + f"[models]\ndefault = {chain}\n")
    result = runner.invoke(app, ["run", "build x", "-w", str(ws), "--mode", "sequential"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "output was still invalid" not in result.output
    return " ".join(result.output.split())  # one line, however Rich wrapped it


def test_a_provider_nobody_listens_for_is_named_as_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    out = run(tmp_path, {"stub": url}, '"stub:gpt"')
    assert f"the model provider for gpt at {url} could not be reached" in out


def test_a_provider_that_does_not_answer_in_time_says_so(tmp_path: Path) -> None:
    with OpenAIStub([("sleep", 5)]) as stub:
        out = run(tmp_path, {"stub": stub.base_url}, '"stub:gpt"')
    assert "the model provider for gpt at" in out
    assert "did not answer in time" in out


def test_every_model_of_a_failing_chain_is_named(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{closed_port()}/v1"
    with OpenAIStub([("status", 503)]) as stub:
        out = run(tmp_path, {"first": stub.base_url, "second": down}, '["first:a", "second:b"]')
    assert "every model of the chain failed" in out
    assert "the model provider for a at" in out and "answered HTTP 503" in out
    assert f"the model provider for b at {down} could not be reached" in out
