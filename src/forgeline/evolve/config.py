"""The evolution daemon's settings: the ``[evolve]`` table of forgeline.toml."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forgeline.core.events import Budget, SignalKind
from forgeline.core.evolution import KIND_ORDER, Limits

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | float) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"2h"`` or ``"1d"`` (ValueError else)."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration like 90s, 10m, 2h or 1d")
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    return seconds


class EvolveConfig(BaseModel):
    """``[evolve]``: what the evolution daemon looks for and the guardrails it keeps."""

    model_config = ConfigDict(extra="forbid")

    signals: tuple[SignalKind, ...] = KIND_ORDER
    """The kinds of signal looked for (``type`` only where the repository configures
    mypy; ``goal`` reads ``.forgeline/goals.md``)."""
    interval: float = 600
    """Seconds (or ``"10m"``) between the starts of two cycles (``--interval``)."""
    max_changes: int = Field(2, ge=0)
    """Changes one cycle may propose (``--max-changes``)."""
    max_in_flight: int = Field(2, ge=1)
    """Changes pending or in progress at once."""
    max_per_day: int = Field(10, ge=0)
    """Changes proposed in any 24 hours."""
    cooldown: float = 3600
    """Seconds (or ``"1h"``) a module rests after a change was proposed for it."""
    max_attempts: int = Field(2, ge=1)
    """Failed changes in a row after which a signal is left to a person."""
    budget: Budget = Field(default_factory=Budget)
    """A cycle's budget (``tokens``, ``usd``), shared out evenly among its changes as
    their task budgets; unset: each change gets the per-task ``[budget]``."""
    auto_merge: bool = False
    """Merge a completed change without ``forgeline changes approve`` when its tests and
    review passed and no test that passed before it fails after it."""
    branch: str | None = None
    """The main branch changes start from and are merged into (default: the branch
    checked out in the repository when the daemon starts)."""
    markers: tuple[str, ...] = ("TODO", "FIXME")
    """The comment markers the ``todo`` signal looks for."""
    timeout: float = Field(600, gt=0)
    """Seconds one tool run of a scan (ruff, mypy, a coverage run) may take; tests use
    ``test_timeout``."""

    @field_validator("interval", "cooldown", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str | int | float) else value

    def limits(self) -> Limits:
        return Limits(
            max_changes=self.max_changes,
            max_in_flight=self.max_in_flight,
            max_per_day=self.max_per_day,
            cooldown_s=self.cooldown,
            max_attempts=self.max_attempts,
        )
