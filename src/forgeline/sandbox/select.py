"""Pick the spawner untrusted code runs with: the bubblewrap sandbox, or (only when asked
for explicitly) plain local processes with a loud warning."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from forgeline.errors import ForgelineError
from forgeline.sandbox.bwrap import BwrapSandbox, ResourceLimits, sandbox_available
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import ProcessSpawner

__all__ = [
    "INSTALL_HINT",
    "UNSAFE_FLAG",
    "SandboxUnavailableError",
    "UnsafeSpawnerWarning",
    "choose_spawner",
]

#: The command-line flag that runs untrusted code without a sandbox.
UNSAFE_FLAG = "--unsafe-no-sandbox"
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap) and make sure user namespaces are enabled"
)


class SandboxUnavailableError(ForgelineError):
    """No sandbox can isolate untrusted code here, and running without one was not allowed."""


class UnsafeSpawnerWarning(UserWarning):
    """Untrusted code will run WITHOUT a sandbox (``--unsafe-no-sandbox``)."""


def choose_spawner(
    *,
    require_sandbox: bool,
    allow_unsafe: bool,
    workspace_extra: Iterable[Path | str] = (),
    limits: ResourceLimits | None = None,
) -> ProcessSpawner:
    """The spawner for untrusted code.

    ``BwrapSandbox`` whenever bubblewrap works here (``workspace_extra`` are extra host paths
    it may write besides the workspace). Otherwise: with ``require_sandbox`` a
    ``SandboxUnavailableError`` naming the reason and what to install; with ``allow_unsafe``
    a ``LocalSpawner`` after an ``UnsafeSpawnerWarning`` (the CLI shows it); with neither a
    ``SandboxUnavailableError`` that names both ways out.
    """
    reason = sandbox_available()
    if reason is None:
        return BwrapSandbox(extra_rw=workspace_extra, limits=limits)
    if require_sandbox:
        raise SandboxUnavailableError(
            f"a sandbox is required but bubblewrap cannot isolate untrusted code here: "
            f"{reason}; {INSTALL_HINT}"
        )
    if allow_unsafe:
        warnings.warn(
            UnsafeSpawnerWarning(
                f"untrusted code (tests, smoke runs, previews) is NOT sandboxed ({reason}): "
                "it runs as this user with this user's files and network. "
                f"Drop {UNSAFE_FLAG} after you {INSTALL_HINT}."
            ),
            stacklevel=2,
        )
        return LocalSpawner()
    raise SandboxUnavailableError(
        f"no isolation available ({reason}): install bubblewrap "
        f"(Debian/Ubuntu: apt-get install bubblewrap), or pass {UNSAFE_FLAG} to run "
        "untrusted code without one"
    )
