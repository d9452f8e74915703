"""The sandbox's own error: a run could not be set up."""

from __future__ import annotations

from forgeline.sandbox.spawner import SpawnError

__all__ = ["SandboxError"]


class SandboxError(SpawnError):
    """The sandbox could not be set up for a run (bubblewrap failed, a bad bind)."""
