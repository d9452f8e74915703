"""The offline default model: the server's life cycle (a stand-in server) and, marked slow
and local_model, the real Qwen2.5-Coder model answering with a schema-valid structured
output. Assembling its file is tests/llm/test_weights.py.

The slow test fails, never skips, when the model cannot load (packages missing, the
runtime absent, a wrong file): in CI that means the ``local`` extra was not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydantic_ai.models
import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.models.openai import OpenAIChatModel

from forgeline.errors import ConfigError
from forgeline.llm import local
from tests.llm.openai_server import OpenAIStub


def test_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGELINE_LOCAL_THREADS", "3")
    assert local.threads() == 3
    monkeypatch.setenv("FORGELINE_LOCAL_THREADS", "zero")
    with pytest.raises(ConfigError, match="FORGELINE_LOCAL_THREADS"):
        local.threads()
    monkeypatch.delenv("FORGELINE_LOCAL_THREADS")
    assert 1 <= local.threads() <= 8


# A stand-in for llama.cpp's server: the same protocol (address on stdout, /health,
# exit when stdin closes) without a model.
FAKE_SERVER = """
import http.server, os, sys, threading
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"http://127.0.0.1:{server.server_port}", flush=True)
sys.stdin.read()
os._exit(0)
"""


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_runtime_available", lambda: True)
    monkeypatch.setattr(local, "_SERVER_SCRIPT", FAKE_SERVER)


@pytest.mark.usefixtures("fake_runtime")
def test_the_server_is_health_checked_and_stopped(tmp_path: Path) -> None:
    server = local.start_server("fake", tmp_path / "fake.gguf", timeout=60)
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.process.poll() is None
    server.stop()
    assert server.process.returncode == 0, "it exits when its stdin closes"


def test_a_server_that_dies_while_loading_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_runtime_available", lambda: True)
    script = "import sys; sys.stderr.write('failed to load model\\n'); sys.exit(3)"
    monkeypatch.setattr(local, "_SERVER_SCRIPT", script)
    with pytest.raises(ConfigError, match="did not start") as info:
        local.start_server("fake", tmp_path / "fake.gguf", timeout=60)
    assert "failed to load model" in str(info.value), "the log's tail is in the message"


def test_without_the_runtime_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_runtime_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'forgeline\[local\]'"):
        local.start_server("fake", tmp_path / "fake.gguf")


def test_patterns_are_spelled_for_the_grammar() -> None:
    assert local.grammar_pattern(r"^\d+\.\d+$") == r"^[0-9]+\.[0-9]+$"
    assert local.grammar_pattern(r"[\w.-]+\s") == r"[A-Za-z0-9_.-]+[ \t\n\r]"
    assert local.grammar_pattern(r"a\\d") == r"a\\d", "an escaped backslash stays"
    schema = Release.model_json_schema()
    walked = local.LocalJsonSchemaTransformer(schema).walk()
    assert walked["properties"]["version"]["pattern"] == r"^[0-9]+\.[0-9]+\.[0-9]+$"


# ------------------------------------------------------------ the real model


class Release(BaseModel):
    """A small answer with a constrained shape."""

    name: str = Field(description="The package name.")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$", description="Semantic version x.y.z.")
    changes: list[str] = Field(min_length=1, description="What changed, one line each.")


@pytest.mark.slow
@pytest.mark.local_model
@pytest.mark.timeout(900)
async def test_the_local_model_answers_with_a_valid_structured_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The conftest forbids model requests; this one goes to a server on 127.0.0.1 only.
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)
    # Assembled from the installed chunk packages into the test's own data directory.
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    name = os.environ.get("FORGELINE_TEST_LOCAL_MODEL", local.DEFAULT_LOCAL_MODEL)
    try:
        model = local.local_model(name)
    except ConfigError as exc:
        pytest.fail(f"the local model cannot load here: {exc}", pytrace=False)
    assert isinstance(model, OpenAIChatModel)
    server = local.server_for(name)
    try:
        assert model.base_url.startswith(server.base_url)
        assert server.base_url.startswith("http://127.0.0.1:")
        assert local.server_for(name) is server, "one server per model per process"
        agent = Agent(model, output_type=Release, instructions="You write release notes.")
        result = await agent.run("forgeline 1.4.0 adds a local model and fixes the resume command.")
        assert isinstance(result.output, Release)
        assert result.output.changes
    finally:
        await model.client.close()
        server.stop()
    assert server.process.poll() is not None, "stopped by its PID"


class Word(BaseModel):
    word: str


async def test_an_answer_sent_back_is_sampled_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    # At the local model's low temperature and fixed seed, the 1.5B model answered a
    # "does not compile" retry four times with the same file: each retry must be sampled
    # hotter, with a seed of its own, and the same way on every run.
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # 127.0.0.1 only
    script = [("ok", {"word": w}) for w in ("first", "second", "third")]
    with OpenAIStub(script) as stub:
        model = local.local_chat_model("qwen", stub.base_url, "key")
        agent = Agent(model, output_type=Word, retries=3)

        @agent.output_validator
        def only_the_third(answer: Word) -> Word:
            if answer.word != "third":
                raise ModelRetry(f"not {answer.word}")
            return answer

        try:
            assert (await agent.run("say a word")).output.word == "third"
        finally:
            await model.client.close()
    sent = [(r["body"]["temperature"], r["body"]["seed"]) for r in stub.requests]
    assert sent == [(0.2, 0), (pytest.approx(0.5), 1), (pytest.approx(0.8), 2)]


async def test_the_local_models_answer_streams_into_the_stages_progress(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from forgeline.core.events import StageProgress, activity_stream
    from forgeline.llm.metered import Meter, MeteredModel
    from forgeline.observability.progress import Activity
    from forgeline.store import SQLiteEventStore

    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # 127.0.0.1 only
    with OpenAIStub([("ok", {"word": "streamed" * 8})], pause=0.03) as stub:
        chat = local.local_chat_model("qwen", stub.base_url, "key")
        async with SQLiteEventStore(tmp_path / "f.db") as store:
            meter = Meter(store=store, task_id="t", role="coder")
            agent = Agent(MeteredModel(chat, "local:qwen", meter), output_type=Word)
            activity = Activity(store, task_id="t", stage="coder", trigger_id="e", interval=0.2)
            try:
                with activity.working():
                    result = await agent.run("say a word")
                    await activity.settle()
            finally:
                await chat.client.close()
            recorded = await store.read_stream(activity_stream("t"))
    assert result.output.word == "streamed" * 8  # the whole answer, as without streaming
    body = stub.requests[0]["body"]
    assert body["stream"] is True
    assert body["temperature"] == 0.2  # the local model's own settings still apply
    progress = [e.data for e in recorded if isinstance(e.data, StageProgress)]
    assert progress, "a snapshot while the answer streamed in"
    assert all(p.models == ("local:qwen",) for p in progress)
    assert any(0 < p.tokens < 30 for p in progress)  # counted as the pieces arrive
    logged = [line.data.text for line in activity.pending()]  # type: ignore[union-attr]
    assert any("answered 30 tokens in" in text for text in logged), logged
