"""Wheels for tests, made on this machine: nothing reaches a network.

``make_wheel`` builds a tiny pure-Python wheel by hand. ``repack`` turns a distribution
installed in forgeline's own environment back into a wheel (its files as its ``RECORD``
lists them, with the tags of its ``WHEEL`` file), so a test can install real packages
(FastAPI, httpx, uvicorn and what they need) offline: ``repack_closure(["fastapi"], dest)``
gives a find-links directory pip resolves them from with ``--no-index``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path, PurePosixPath

from forgeline.workspace.venv import seed_distributions


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _write(wheel: Path, files: dict[str, bytes], record_path: str) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows((path, _digest(data), len(data)) for path, data in files.items())
    writer.writerow((record_path, "", ""))
    tmp = wheel.with_name(wheel.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(record_path, buffer.getvalue())
    tmp.replace(wheel)
    return wheel


def make_wheel(
    dest: Path,
    name: str,
    version: str,
    code: str,
    requires: Sequence[str] = (),
    *,
    extra: dict[str, str] | None = None,
) -> Path:
    """A pure-Python wheel with one package ``name`` whose ``__init__`` is ``code``
    (``extra``: more files, by path inside the wheel)."""
    meta = f"{name}-{version}.dist-info"
    metadata_text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata_text += "".join(f"Requires-Dist: {req}\n" for req in requires)
    files = {
        f"{name}/__init__.py": code.encode(),
        **{path: text.encode() for path, text in (extra or {}).items()},
        f"{meta}/METADATA": metadata_text.encode(),
        f"{meta}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: forgeline-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    dest.mkdir(parents=True, exist_ok=True)
    return _write(dest / f"{name}-{version}-py3-none-any.whl", files, f"{meta}/RECORD")


def repack(dist: metadata.Distribution, dest: Path) -> Path:
    """``dist`` (installed) as a wheel in ``dest``: the files its ``RECORD`` lists inside
    site-packages (no bytecode, no console scripts: pip makes those from its entry
    points), named with the first tag of its ``WHEEL`` file."""
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [
        line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")
    ]
    if not tags:
        raise ValueError(f"{dist.metadata['Name']} has no WHEEL tags")
    stem = dist.metadata["Name"].replace("-", "_").replace(".", "_")
    wheel = dest / f"{stem}-{dist.version}-{tags[0]}.whl"
    if wheel.exists():
        return wheel
    files: dict[str, bytes] = {}
    record_path = ""
    for file in dist.files or ():
        rel = PurePosixPath(str(file))
        info = rel.parent.name.endswith(".dist-info")
        if ".." in rel.parts or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue
        if info and rel.name == "RECORD":
            record_path = str(rel)
            continue
        if info and rel.name in ("INSTALLER", "REQUESTED", "direct_url.json"):
            continue
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            files[str(rel)] = source.read_bytes()
    if not record_path:
        raise ValueError(f"{dist.metadata['Name']} has no RECORD")
    dest.mkdir(parents=True, exist_ok=True)
    return _write(wheel, files, record_path)


def repack_closure(roots: Iterable[str], dest: Path) -> list[Path]:
    """Wheels of ``roots`` and everything they need at run time, as installed in
    forgeline's own environment, in ``dest``."""
    return [repack(dist, dest) for dist in seed_distributions(list(roots))]
