"""The packages a project declares, read where Python projects declare them.

A project names what it needs beyond the standard library in ``requirements.txt`` (one
requirement specifier a line, ``-r other.txt`` to include another file of the workspace)
or in ``pyproject.toml`` (``[project] dependencies``, and the test and development groups
of ``[project.optional-dependencies]`` and ``[dependency-groups]``, since the project's
tests run in the same venv). Both are read when both exist. ``read_declaration`` returns
the specifiers in the order found, and the files they came from.

Every entry must be a requirement specifier, ``name[extra]>=1.0 ; marker``: no local paths,
URLs, ``name @ URL``, editable installs or pip options (the index is forgeline's to
choose, and building a package from source would run its code). A line that is not one is
a ``PackageError`` naming the file and the line. ``parse_install_args`` applies the same
checks to the arguments of a terminal ``pip install``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from forgeline.errors import WorkspaceError
from forgeline.workspace.git import confined_path

__all__ = [
    "DECLARATION_FILES",
    "TEST_GROUPS",
    "Declaration",
    "InstallRequest",
    "PackageError",
    "parse_install_args",
    "read_declaration",
    "requirement",
]

#: Where a project declares its packages (relative to the workspace), in reading order.
DECLARATION_FILES: tuple[str, ...] = ("requirements.txt", "pyproject.toml")
#: The optional-dependency and dependency groups of ``pyproject.toml`` that are installed
#: too: the project's tests run in its venv.
TEST_GROUPS: tuple[str, ...] = ("test", "tests", "testing", "dev")
#: pip options an agent may give to ``pip install`` (none reaches the network or builds).
_INSTALL_FLAGS = {"-U": "--upgrade", "--upgrade": "--upgrade", "--pre": "--pre"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: How deep ``-r`` includes may nest.
_MAX_INCLUDES = 8


class PackageError(WorkspaceError):
    """Packages could not be declared, fetched or installed: the message says which and
    why (a bad declaration line, pip's own reason, a policy rule)."""


@dataclass(frozen=True)
class Declaration:
    """The requirement specifiers a project declares, and the files they came from."""

    requirements: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The declared distributions' normalized names, each once, in order."""
        return tuple(
            dict.fromkeys(canonicalize_name(Requirement(r).name) for r in self.requirements)
        )


def requirement(text: str, where: str) -> str:
    """``text`` as a normalized requirement specifier, or a ``PackageError`` saying why it
    is not one (``where`` names the file and line, or the argument)."""
    text = text.strip()
    if text.startswith("-"):
        raise PackageError(
            f"{where}: the pip option {text.split()[0].split('=')[0]!r} is not allowed; "
            "declare requirement specifiers only (name[extra]>=1.0), one per line"
        )
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise PackageError(
            f"{where}: {text!r} is not a requirement specifier like name[extra]>=1.0: "
            "local paths, URLs and archives cannot be installed (they would build code)"
        ) from exc
    if req.url:
        raise PackageError(
            f"{where}: {text!r} is a direct reference (name @ URL): only packages from the "
            "index can be installed"
        )
    if not _NAME.match(req.name):
        raise PackageError(f"{where}: {text!r} does not name a package")
    return str(req)


# --------------------------------------------------------------------------- files


def _requirements_file(workspace: Path, name: str, seen: tuple[str, ...], found: list[str]) -> None:
    """Read the requirements file ``name`` (and what it includes) into ``found``."""
    if name in seen or len(seen) >= _MAX_INCLUDES:
        chain = " -> ".join((*seen, name))
        raise PackageError(f"requirements files include each other too deeply: {chain}")
    try:
        path = confined_path(workspace, name)
        text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, WorkspaceError) as exc:
        raise PackageError(f"cannot read requirements file {name!r}: {exc}") from exc
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] in ("-r", "--requirement") and len(words) == 2:
            _requirements_file(workspace, words[1], (*seen, name), found)
            continue
        found.append(requirement(line, f"{name} line {number}"))


def _group_entries(table: Any, group: str, where: str, depth: int = 0) -> list[str]:
    """The specifiers of ``[dependency-groups] group`` (with ``include-group``)."""
    entries = table.get(group, []) if isinstance(table, dict) else []
    if not isinstance(entries, list) or depth > _MAX_INCLUDES:
        raise PackageError(f"{where}: [dependency-groups] {group} must be a list")
    found: list[str] = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("include-group"), str):
            found += _group_entries(table, entry["include-group"], where, depth + 1)
        elif isinstance(entry, str):
            found.append(entry)
        else:
            raise PackageError(f"{where}: [dependency-groups] {group} has an entry {entry!r}")
    return found


def _pyproject(workspace: Path, name: str) -> list[str]:
    try:
        data = tomllib.loads(confined_path(workspace, name).read_text(encoding="utf-8"))
    except (OSError, WorkspaceError, UnicodeDecodeError) as exc:
        raise PackageError(f"cannot read {name}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PackageError(f"{name} is not valid TOML: {exc}") from exc
    project = data.get("project", {})
    if not isinstance(project, dict):
        raise PackageError(f"{name}: [project] must be a table")
    texts: list[tuple[str, str]] = []
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list):
        raise PackageError(f"{name}: [project] dependencies must be a list of strings")
    texts += [(d, f"{name} [project] dependencies") for d in dependencies]
    optional = project.get("optional-dependencies", {})
    groups = data.get("dependency-groups", {})
    for group in TEST_GROUPS:
        if isinstance(optional, dict) and isinstance(optional.get(group), list):
            where = f"{name} [project.optional-dependencies] {group}"
            texts += [(d, where) for d in optional[group]]
        if isinstance(groups, dict) and group in groups:
            where = f"{name} [dependency-groups] {group}"
            texts += [(d, where) for d in _group_entries(groups, group, name)]
    own = canonicalize_name(str(project.get("name", ""))) if project.get("name") else None
    found: list[str] = []
    for text, where in texts:
        if not isinstance(text, str):
            raise PackageError(f"{where}: {text!r} is not a requirement string")
        spec = requirement(text, where)
        if own is None or canonicalize_name(Requirement(spec).name) != own:
            found.append(spec)  # the project naming itself (its own extras) is skipped
    return found


def read_declaration(workspace: Path) -> Declaration:
    """The packages ``workspace`` declares (``DECLARATION_FILES`` that exist), each
    specifier once, in the order found."""
    found: list[str] = []
    sources: list[str] = []
    for name in DECLARATION_FILES:
        if not (workspace / name).is_file():
            continue
        before = len(found)
        if name == "requirements.txt":
            _requirements_file(workspace, name, (), found)
        else:
            found += _pyproject(workspace, name)
        if len(found) > before:
            sources.append(name)
    return Declaration(tuple(dict.fromkeys(found)), tuple(sources))


# --------------------------------------------------------------------------- pip install


@dataclass(frozen=True)
class InstallRequest:
    """A checked ``pip install``: requirement specifiers and the harmless flags given."""

    requirements: tuple[str, ...]
    flags: tuple[str, ...] = ()


def parse_install_args(args: Sequence[str], workspace: Path) -> InstallRequest:
    """Check the arguments after ``pip install``: requirement specifiers, ``-U``/
    ``--upgrade``, ``--pre`` and ``-r FILE`` (a requirements file in ``workspace``).
    Anything else is a ``PackageError`` saying why."""
    requirements: list[str] = []
    flags: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        i += 1
        if arg in _INSTALL_FLAGS:
            if _INSTALL_FLAGS[arg] not in flags:
                flags.append(_INSTALL_FLAGS[arg])
            continue
        if arg in ("-r", "--requirement") or arg.startswith(("-r", "--requirement=")):
            if arg in ("-r", "--requirement"):
                if i >= len(items):
                    raise PackageError(f"pip install {arg} needs a file")
                name = items[i]
                i += 1
            else:
                name = arg.removeprefix("--requirement=").removeprefix("-r")
            _requirements_file(workspace, name, (), requirements)
            continue
        if arg.startswith("-"):
            raise PackageError(
                f"pip install option {arg.split('=')[0]!r} is not allowed: only "
                f"{', '.join(sorted(_INSTALL_FLAGS))} and -r FILE are"
            )
        requirements.append(requirement(arg, "argument"))
    if not requirements:
        raise PackageError("pip install needs at least one requirement")
    return InstallRequest(tuple(requirements), tuple(flags))
