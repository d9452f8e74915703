"""The offline default: a Qwen2.5-Coder GGUF model run on the CPU by llama.cpp's server.

``local:qwen2.5-coder-1.5b`` (or ``local:qwen2.5-coder-0.5b``) needs no account and no
network at run time. Its GGUF file comes from pip packages that each hold one chunk of it
(the ``local`` and ``local-small`` extras): ``forgeline.llm.weights`` (``ensure_model``)
joins them once into ``<data dir>/models/<file>`` and refuses anything but the pinned file.

:func:`local_model` then starts llama.cpp's OpenAI-compatible server (the ``xllamacpp``
wheel, which embeds it) as a child process on ``127.0.0.1``, one per model per process,
and returns an ``OpenAIChatModel`` pointed at it: the same path as Ollama or vLLM.
Structured output uses the server's JSON-schema grammar (``response_format`` of type
``json_schema``), so every answer has the output type's shape; the schema is also put in
the instructions, which small models need to fill it with sense.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import secrets
import selectors
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from openai import AsyncOpenAI
from pydantic_ai import RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    RetryPromptPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIChatModelSettings
from pydantic_ai.profiles import InlineDefsJsonSchemaTransformer
from pydantic_ai.profiles.openai import OpenAIModelProfile
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from forgeline.errors import ConfigError
from forgeline.llm.weights import (
    DEFAULT_LOCAL_MODEL,
    LOCAL_MODELS,
    LocalModelSpec,
    chunk_paths,
    data_dir,
    ensure_model,
    local_spec,
    models_dir,
)

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "LOCAL_MODELS",
    "LocalModelSpec",
    "chunk_paths",
    "data_dir",
    "ensure_model",
    "local_model",
    "local_spec",
    "models_dir",
    "server_for",
    "start_server",
]

RUNTIME_PACKAGE = "xllamacpp"

JsonSchema = dict[str, Any]


# --------------------------------------------------------------------------- the server

# Run in the child: llama.cpp's server (embedded in xllamacpp) on a port the OS picks. It
# prints its address, then serves until its stdin closes (the parent exited or stopped it).
_SERVER_SCRIPT = """
import json, os, sys
import xllamacpp
cfg = json.loads(sys.argv[1])
p = xllamacpp.CommonParams()
p.model.path = cfg["model"]
p.model_alias = {cfg["alias"]}
p.hostnames = ["127.0.0.1"]
p.port = 0
p.api_keys = [cfg["api_key"]]
p.n_ctx = cfg["n_ctx"]
p.n_parallel = 1
p.cpuparams.n_threads = cfg["threads"]
p.cpuparams_batch.n_threads = cfg["threads"]
p.use_jinja = True
p.sampling.penalty_repeat = cfg["repeat_penalty"]
server = xllamacpp.Server(p)
print(server.listening_address, flush=True)
sys.stdin.read()
os._exit(0)
"""

START_TIMEOUT = 600.0
"""Seconds to wait for the server to load the model and answer its health check."""

CONTEXT_TOKENS = 8192
MAX_TOKENS = 2048
REPEAT_PENALTY = 1.1
TEMPERATURE = 0.2
#: A fixed sampling seed: the same prompt gets the same answer on the same machine, so a
#: run can be reproduced (candidates get seeds of their own).
SEED = 0
#: How much each retry in a conversation raises the temperature (up to 1). Asked again at
#: a low temperature, the small model repeated a rejected answer word for word, four times.
RETRY_TEMPERATURE_STEP = 0.3


def threads() -> int:
    """``$FORGELINE_LOCAL_THREADS``, else the CPUs this process may use (at most 8)."""
    if value := os.environ.get("FORGELINE_LOCAL_THREADS"):
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigError(f"FORGELINE_LOCAL_THREADS={value!r}: write a positive number")
        return count
    return max(1, min(8, len(os.sched_getaffinity(0))))


@dataclass
class LocalServer:
    """A running llama.cpp server, owned (and stopped at exit) by the process that started it."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    api_key: str
    owner: int

    def stop(self, timeout: float = 10.0) -> None:
        """Close its stdin (it exits), then terminate and kill it by PID if it lingers."""
        if self.owner != os.getpid():
            return  # a forked child must not stop its parent's server
        process = self.process
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        if process.poll() is None:
            try:
                process.wait(timeout=timeout / 2)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=timeout / 2)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        with contextlib.suppress(OSError):
            if process.stdout is not None:
                process.stdout.close()


_servers: dict[str, LocalServer] = {}
_servers_lock = threading.Lock()


def stop_servers() -> None:
    """Stop every local model server this process started (the runtime's shutdown, and
    at exit)."""
    with _servers_lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()


atexit.register(stop_servers)


def _runtime_available() -> bool:
    return importlib.util.find_spec(RUNTIME_PACKAGE) is not None


def start_server(
    name: str, model_path: Path, *, timeout: float = START_TIMEOUT, log_path: Path | None = None
) -> LocalServer:
    """Start llama.cpp's server for ``model_path`` and wait until it answers ``/health``."""
    if not _runtime_available():
        raise ConfigError(
            f"local models need llama.cpp's server: pip install 'forgeline[local]' "
            f"(the {RUNTIME_PACKAGE} package)"
        )
    api_key = secrets.token_urlsafe(24)
    config = {
        "model": str(model_path),
        "alias": name,
        "api_key": api_key,
        "n_ctx": CONTEXT_TOKENS,
        "threads": threads(),
        "repeat_penalty": REPEAT_PENALTY,
    }
    log_path = log_path or model_path.with_name(f"{name}.server.log")
    # llama.cpp's OpenMP threads spin while they wait for each other by default: on a busy
    # machine (tests, another server) that cut generation from ~20 to ~1 token/s here.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal reaches forgeline, not the server
        )
    server = LocalServer(name, process, "", api_key, os.getpid())
    deadline = time.monotonic() + timeout
    try:
        assert process.stdout is not None
        address = _read_line(process.stdout, deadline)
        if not address.startswith("http://127.0.0.1:"):
            raise ConfigError(f"unexpected server address {address!r}")
        server.base_url = address.rstrip("/")
        _wait_healthy(server.base_url, process, deadline)
    except (ConfigError, OSError) as exc:
        server.stop()
        raise ConfigError(
            f"the local model {name!r} did not start: {exc}{_log_tail(log_path)}"
        ) from exc
    return server


def _read_line(stream: IO[bytes], deadline: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    line = b""
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise ConfigError("timed out loading the model")
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                raise ConfigError("the server exited while loading the model")
            line += chunk
    finally:
        selector.close()
    return line.decode(errors="replace").strip()


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    problem = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=5) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:  # 503 while the model loads
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(exc)
        time.sleep(0.2)
    raise ConfigError(f"health check timed out ({problem})")


def _log_tail(log_path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            return f"\nserver log ({log_path}):\n" + "\n".join(tail)
    return ""


def server_for(name: str = DEFAULT_LOCAL_MODEL) -> LocalServer:
    """This process's server for local model ``name``, started (and the file assembled) once."""
    spec = local_spec(name)
    with _servers_lock:
        server = _servers.get(spec.name)
        if server is not None and server.owner == os.getpid() and server.process.poll() is None:
            return server
        path = ensure_model(spec.name)
        server = start_server(spec.name, path)
        _servers[spec.name] = server
        return server


# --------------------------------------------------------------------------- the model

# llama.cpp's schema-to-grammar conversion knows character classes but not the shorthand
# escapes: it accepts any string for a pattern with ``\d`` (and says so in its log).
_SHORTHANDS = {"d": "0-9", "w": "A-Za-z0-9_", "s": " \\t\\n\\r"}


def grammar_pattern(pattern: str) -> str:
    r"""``pattern`` with ``\d``, ``\w`` and ``\s`` spelled as the classes they stand for."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped in _SHORTHANDS:
                ranges = _SHORTHANDS[escaped]
                out.append(ranges if in_class else f"[{ranges}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


class LocalJsonSchemaTransformer(InlineDefsJsonSchemaTransformer):
    """Inline ``$defs`` (the grammar needs no references) and make patterns grammar-ready."""

    def transform(self, schema: JsonSchema) -> JsonSchema:
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            schema["pattern"] = grammar_pattern(pattern)
        return schema


LOCAL_PROFILE = OpenAIModelProfile(
    # llama.cpp turns a JSON schema into a grammar: output always has the schema's shape.
    supports_json_schema_output=True,
    supports_json_object_output=True,
    default_structured_output_mode="native",
    # ... and a small model fills the shape with sense only when it also reads the schema.
    native_output_requires_schema_in_instructions=True,
    json_schema_transformer=LocalJsonSchemaTransformer,
    openai_supports_strict_tool_definition=False,
    ignore_streamed_leading_whitespace=True,
)

LOCAL_SETTINGS = OpenAIChatModelSettings(
    max_tokens=MAX_TOKENS,
    temperature=TEMPERATURE,
    seed=SEED,
    extra_body={"repeat_penalty": REPEAT_PENALTY},
)


def resampled(messages: list[ModelMessage], settings: ModelSettings | None) -> ModelSettings | None:
    """``settings`` for the next answer of a conversation: after the model's answers were
    sent back ``n`` times (a retry, or the coder's "rolled back" follow-up), a temperature
    ``n`` steps higher and seed ``n`` further, so the model answers differently; still the
    same answer for the same conversation, so runs stay reproducible."""
    later = [m for m in messages if isinstance(m, ModelRequest)][1:]
    sent_back = sum(any(_is_feedback(part) for part in m.parts) for m in later)
    if not sent_back:
        return settings
    merged: dict[str, Any] = {**LOCAL_SETTINGS, **(settings or {})}
    temperature = float(merged.get("temperature", TEMPERATURE))
    merged["temperature"] = min(1.0, temperature + RETRY_TEMPERATURE_STEP * sent_back)
    merged["seed"] = int(merged.get("seed", SEED)) + sent_back
    return cast(ModelSettings, merged)


def _is_feedback(part: ModelRequestPart) -> bool:
    """Whether ``part``, in a request after the first, answers the model's last response
    with feedback rather than a tool's result. (A retry reaches the model as a user
    prompt, ``pydantic_ai`` translates it so; the other two are its older forms.)"""
    if isinstance(part, ToolReturnPart):
        return getattr(part, "outcome", "") == "retried"
    return isinstance(part, UserPromptPart | RetryPromptPart)


class LocalChatModel(OpenAIChatModel):
    """llama.cpp's server through its OpenAI-compatible API, answering a retry afresh.

    A stage's calls stream (``llm/metered.py``): the server sends a piece a token, so a
    run shows its tokens as they come, and a call abandoned midway (Ctrl-C, cancel)
    closes the connection, which stops the server generating for it."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        settings = resampled(messages, model_settings)
        return await super().request(messages, settings, model_request_parameters)

    @contextlib.asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        settings = resampled(messages, model_settings)
        async with super().request_stream(
            messages, settings, model_request_parameters, run_context
        ) as stream:
            yield stream


def local_model(name: str = DEFAULT_LOCAL_MODEL) -> Model:
    """A pydantic-ai model for ``local:NAME``: llama.cpp's server on this machine."""
    spec = local_spec(name)
    server = server_for(spec.name)
    return local_chat_model(spec.name, f"{server.base_url}/v1", server.api_key)


def local_chat_model(name: str, base_url: str, api_key: str) -> LocalChatModel:
    """The model ``name`` served at ``base_url``, with the local profile and settings."""
    # No client retries: a timed-out local request would only be queued again behind itself.
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    provider = OpenAIProvider(openai_client=client)
    return LocalChatModel(name, provider=provider, profile=LOCAL_PROFILE, settings=LOCAL_SETTINGS)
