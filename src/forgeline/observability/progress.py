"""What a running stage is doing, recorded while it works: ``stage.progress`` and ``stage.log``.

Each stage run has an ``Activity`` (``StageRun.activity``). While the run works it is the
*current* activity (a context variable), so the code doing the work reports to it without
being handed it, whatever layer it sits in:

- the metered model, per model call (``model_call``): the pieces of the answer as they
  stream in, then a log line ("model answered 812 tokens in 31.0 s");
- the test run (``runs/testrun.py``, ``test_run``): tests done and collected while pytest
  runs, then a log line ("ran pytest: 7 passed, 1 failed in 3.2 s");
- the stage itself, as it commits (``StageRun.commit``): "wrote todo.py (42 lines)".

What it records, in the task's ``activity-<task>`` stream:

- every ``interval`` seconds while the run goes on, one ``stage.progress`` snapshot and
  the log lines so far, in one append. The first comes after one interval, so a stage
  done sooner records no snapshot and costs no append;
- the log lines left when the run ends go out with the stage's result, in its
  transaction (``pending``), and are dropped with it;
- an interrupted run records nothing more: its timer and a recording in flight stop with
  it, and a snapshot is not recorded once the task has been cancelled (the process
  running it interrupts the run as soon as it sees that).

A recording that fails (the store is gone) is logged and dropped: progress never fails
the stage, whose own result then meets the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from forgeline.core.events import (
    EventData,
    NewEvent,
    StageLogged,
    StageProgress,
    TaskCancelled,
    activity_stream,
    task_stream,
    utcnow,
)
from forgeline.errors import ForgelineError

if TYPE_CHECKING:
    from forgeline.store.base import EventStore

__all__ = ["Activity", "ModelCall", "TestCount", "current", "duration_text"]

log = logging.getLogger(__name__)

_current: ContextVar[Activity | None] = ContextVar("forgeline_activity", default=None)


def current() -> Activity | None:
    """The activity of the stage run this code works for, if any."""
    return _current.get()


def duration_text(seconds: float) -> str:
    """``4.2 s``, ``3m05s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class ModelCall:
    """One model answer in progress."""

    model: str
    started: float = field(default_factory=time.monotonic)
    tokens: int = 0
    """Output tokens so far (pieces counted as they stream in, or the provider's count)."""
    first_token: float | None = None

    def streamed(self, tokens: int) -> None:
        """The answer has about ``tokens`` output tokens so far."""
        if tokens > 0 and self.first_token is None:
            self.first_token = time.monotonic()
        self.tokens = max(self.tokens, tokens)

    def rate(self, now: float) -> float | None:
        """Tokens a second since the first one came (None before there is a second one)."""
        if self.first_token is None or self.tokens < 2 or now <= self.first_token:
            return None
        return (self.tokens - 1) / (now - self.first_token)


@dataclass
class TestCount:
    """One pytest run in progress."""

    __test__ = False  # not a test class, whatever its name says

    done: int = 0
    total: int | None = None
    """Collected tests, once pytest has collected them."""


class Activity:
    """One stage run's progress and log lines (see the module docstring)."""

    def __init__(
        self,
        store: EventStore,
        *,
        task_id: str,
        stage: str,
        trigger_id: str,
        item_id: str | None = None,
        item_title: str | None = None,
        interval: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.stage = stage
        self.trigger_id = trigger_id
        self.item_id = item_id
        self.item_title = item_title
        self.interval = interval
        self.clock = clock
        self.started_at = clock()
        self._started = time.monotonic()
        self.calls: list[ModelCall] = []
        self.tests: list[TestCount] = []
        self.answered_tokens = 0
        self._lines: list[NewEvent] = []
        self._timer: asyncio.TimerHandle | None = None
        self._recording: asyncio.Task[None] | None = None
        self._stopped = False
        self._seen = 0

    # ----------------------------------------------------------- what reports to it

    @contextlib.contextmanager
    def model_call(self, model: str) -> Iterator[ModelCall]:
        """A model answer in progress while inside."""
        call = ModelCall(model)
        self.calls.append(call)
        try:
            yield call
        finally:
            self.calls.remove(call)

    def model_answered(
        self, model: str, tokens: int, seconds: float, *, cached: bool = False
    ) -> None:
        if cached:
            self.log(f"model {model} answered {tokens} tokens from the response cache")
            return
        self.answered_tokens += tokens
        rate = f", {tokens / seconds:.1f} tokens/s" if seconds >= 1 and tokens else ""
        self.log(f"model {model} answered {tokens} tokens in {duration_text(seconds)}{rate}")

    @contextlib.contextmanager
    def test_run(self) -> Iterator[TestCount]:
        """A pytest run in progress while inside."""
        count = TestCount()
        self.tests.append(count)
        try:
            yield count
        finally:
            self.tests.remove(count)

    def log(self, text: str) -> None:
        """A line of what the stage did, recorded with the next snapshot or its result."""
        if self._stopped:
            return
        data = StageLogged(stage=self.stage, trigger_id=self.trigger_id, text=text)
        self._lines.append(self._event(data))

    # ------------------------------------------------------------------- snapshots

    def snapshot(self) -> StageProgress:
        now = time.monotonic()
        rates = [r for r in (call.rate(now) for call in self.calls) if r is not None]
        collected = [count.total for count in self.tests]
        return StageProgress(
            stage=self.stage,
            trigger_id=self.trigger_id,
            item_id=self.item_id,
            item_title=self.item_title,
            started_at=self.started_at,
            elapsed_s=round(now - self._started, 3),
            models=tuple(call.model for call in self.calls),
            tokens=sum(call.tokens for call in self.calls),
            tokens_per_s=round(sum(rates), 2) if rates else None,
            answered_tokens=self.answered_tokens,
            tests_done=sum(count.done for count in self.tests) if self.tests else None,
            tests_total=(
                sum(t for t in collected if t is not None)
                if collected and None not in collected
                else None
            ),
        )

    def _event(self, data: EventData) -> NewEvent:
        return NewEvent(
            stream_id=activity_stream(self.task_id),
            data=data,
            correlation_id=self.task_id,
            actor=self.stage,
            created_at=self.clock(),
        )

    # ------------------------------------------------------------------- recording

    @contextlib.contextmanager
    def working(self) -> Iterator[Activity]:
        """The current activity while inside, recording a snapshot every ``interval``;
        leaving stops the timer and any recording still in flight (an interrupted run
        records nothing more). ``settle`` before leaving on the way out of a run that
        ended normally."""
        token = _current.set(self)
        self._schedule()
        try:
            yield self
        finally:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
            if self._recording is not None and not self._recording.done():
                self._recording.cancel()
            _current.reset(token)

    async def settle(self) -> None:
        """Let a recording in flight finish (the run ended normally)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._recording is not None:
            await asyncio.wait([self._recording])

    def pending(self) -> list[NewEvent]:
        """The log lines not recorded yet, to record with the run's result."""
        lines, self._lines = self._lines, []
        return lines

    def _schedule(self) -> None:
        if not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._due)

    def _due(self) -> None:
        self._recording = asyncio.get_running_loop().create_task(self._record())

    async def _record(self) -> None:
        try:
            if await self._cancelled():
                return  # the run is about to be interrupted: nothing more is recorded
            events = [self._event(self.snapshot()), *self.pending()]
            await self.store.append(activity_stream(self.task_id), events)
        except ForgelineError as exc:
            log.warning("progress of %s not recorded: %s", self.stage, exc)
        self._schedule()

    async def _cancelled(self) -> bool:
        """Whether the task was cancelled since the last look (the store's cached read
        asks the database only for the newer events)."""
        events = await self.store.read_stream(task_stream(self.task_id), after_version=self._seen)
        if events:
            self._seen = events[-1].version
        return any(isinstance(event.data, TaskCancelled) for event in events)
