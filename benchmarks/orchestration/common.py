"""What every flow of the orchestration benchmark shares: the result row and its figures."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("planner", "architect", "coder", "tester", "reviewer", "deployer")
"""The six stages every flow runs, in order, with an instant result each."""


@dataclass
class Result:
    """One measured run: a tool on a store, ``tasks`` tasks with ``inflight`` at once."""

    tool: str
    store: str
    tasks: int
    inflight: int
    completed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    """Per task, submit to its last durable commit (seconds)."""
    dispatch: list[float] = field(default_factory=list, repr=False)
    """Per stage step, the commit of its trigger to the handler starting (seconds)."""
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    """Processor time this process (all its threads) used while the tasks ran."""
    persists: str = ""
    note: str = ""
    error: str = ""

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        row = {k: v for k, v in asdict(self).items() if k not in ("latencies", "dispatch")}
        row["tasks_per_s"] = round(self.rate, 1)
        row["cpu_ms_per_task"] = (
            round(self.cpu_seconds * 1000 / self.completed, 3) if self.completed else None
        )
        row["latency_p50_ms"] = ms(percentile(self.latencies, 50))
        row["latency_p99_ms"] = ms(percentile(self.latencies, 99))
        row["dispatch_p50_ms"] = ms(percentile(self.dispatch, 50))
        row["dispatch_p99_ms"] = ms(percentile(self.dispatch, 99))
        return row


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return values[0] if q <= 0 else cuts[min(int(q), 99) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def emit(result: Result) -> None:
    """Hand a child's result to the parent: one JSON line, prefixed so logs can't fake it."""
    result.peak_rss_mb = round(peak_rss_mb(), 1)
    print("RESULT " + json.dumps(result.summary()), flush=True)


class Clock:
    """``perf_counter`` stopwatch."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def cpu(self) -> float:
        return time.process_time() - self.cpu_start
