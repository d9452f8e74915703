"""What a run used, as the events record it (``test.results``, ``deploy.status``,
``tool.command``)."""

from __future__ import annotations

from forgeline.core.events import RunUsage
from forgeline.sandbox.spawner import ResourceUsage

__all__ = ["run_usage"]


def run_usage(usage: ResourceUsage | None) -> RunUsage | None:
    """A spawner's ``ResourceUsage`` as the events record it."""
    if usage is None:
        return None
    return RunUsage(
        mechanism=usage.mechanism,
        wall_s=round(usage.wall_s, 6),
        cpu_s=None if usage.cpu_s is None else round(usage.cpu_s, 6),
        peak_memory_bytes=usage.peak_memory_bytes,
        peak_pids=usage.peak_pids,
        limits_hit=usage.limits_hit,
    )
