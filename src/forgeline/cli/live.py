"""A task's events as they come, and while stages work, what each is doing (Rich).

``TaskView.show(event)`` takes what ``Runtime.follow(..., activity=True)`` yields:

- a ``stage.progress`` event: on a terminal, inside ``live()``, it (re)draws that stage
  run's line under the printed events, redrawn four times a second so its elapsed time
  counts (then tokens so far and tokens a second while a model answers, the test count
  while pytest runs); elsewhere it prints a plain line, at most one per stage run every
  ``plain_every`` seconds (by the events' times, so a log file stays short);
- an event a stage records on the run's trigger (its result, its failure) ends the run's
  line;
- every other event is printed as a line (``render.print_event``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from forgeline.cli.render import print_event, progress_text
from forgeline.core.events import Event, StageProgress

PLAIN_EVERY = 5.0
"""Seconds between two plain progress lines of one stage run (output not a terminal)."""


class TaskView:
    """Prints a task's events; shows its running stages (see the module docstring)."""

    def __init__(
        self, console: Console, *, progress: bool = True, plain_every: float = PLAIN_EVERY
    ) -> None:
        self.console = console
        self.progress = progress
        """Whether ``stage.progress`` events are shown at all."""
        self.plain_every = plain_every
        self.running: dict[tuple[str, str], StageProgress] = {}
        """The latest progress of each running stage run, by (stage, trigger id)."""
        self._printed: dict[tuple[str, str], datetime] = {}
        self._live: Live | None = None

    @contextlib.contextmanager
    def live(self) -> Iterator[TaskView]:
        """Draw the running stages' lines while inside, if the console is a terminal."""
        if not self.console.is_terminal:
            yield self
            return
        with Live(
            console=self.console,
            get_renderable=self._lines,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            self._live = live
            try:
                yield self
            finally:
                self._live = None

    def show(self, event: Event) -> None:
        data = event.data
        if isinstance(data, StageProgress):
            if self.progress:
                key = (event.actor, data.trigger_id)
                self.running[key] = data
                if self._live is None:
                    self._plain(key, event)
            return
        if event.causation_id is not None:
            self.running.pop((event.actor, event.causation_id), None)
        print_event(self.console, event)

    def _plain(self, key: tuple[str, str], event: Event) -> None:
        last = self._printed.get(key)
        if last is not None and (event.created_at - last).total_seconds() < self.plain_every:
            return
        self._printed[key] = event.created_at
        print_event(self.console, event)

    def _lines(self) -> RenderableType:
        now = datetime.now(UTC)
        lines = []
        for (stage, _), progress in list(self.running.items()):
            elapsed = max((now - progress.started_at).total_seconds(), progress.elapsed_s)
            line = Text.from_markup(f"[bold cyan]{stage:<12}[/] {progress_text(progress, elapsed)}")
            lines.append(line)
        return Group(*lines)
