"""Structured logs: task and correlation ids bound, JSON lines when stderr is not a
terminal (a service, a pipe), readable lines on a terminal, secrets redacted.

forgeline's modules log with the standard library (``logging.getLogger(__name__)``, under
the ``forgeline`` logger; values go in ``extra=``). ``configure_logging``, called by the
runtime (``open_runtime``) with the ``[telemetry]`` settings, gives that logger one
handler whose formatter is structlog's ``ProcessorFormatter``: each record becomes one
line with its level, time, logger, extras and the values bound by ``bind_task`` (context
variables, so concurrent stage runs keep their own ids). Calling it again replaces what
it set up. Without it, records go wherever the host's logging sends them.

Secrets: the redactor is ``forgeline.redaction``'s, the process's one for events, log
records and messages: a record's message and traceback are redacted when it is made (the
log record factory), and every value of the line once more before it is rendered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

from forgeline import redaction
from forgeline.observability.config import TelemetryConfig

__all__ = ["ROOT", "bind_task", "configure_logging"]

#: The standard-library logger whose records forgeline renders (its modules log below it).
ROOT = "forgeline"


def _redact(logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every string in the line through the process's redactor."""
    return redaction.current().value(dict(event))


def _exception_text(
    logger: Any, name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A standard-library record's traceback, which the redacting log record factory has
    already turned into (redacted) text, as the line's ``exception``."""
    record = event.get("_record")
    text = getattr(record, "exc_text", None)
    if text and "exc_info" not in event:
        event["exception"] = text
    return event


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a test's capture, a
    redirected stream), like the standard library's last-resort handler."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_handler: logging.Handler | None = None


def configure_logging(config: TelemetryConfig, *, stream: TextIO | None = None) -> None:
    """Render the ``forgeline.*`` log records as ``config`` says, to ``stream`` (default:
    whatever stderr is when a record is written)."""
    global _handler
    out = stream or sys.stderr
    fmt = config.log_format
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    handler: logging.Handler = _Stderr() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.stdlib.ExtraAdder(),
                _exception_text,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact,
                renderer,
            ],
        )
    )
    level = logging.getLevelNamesMapping()[config.log_level.upper()]
    handler.setLevel(level)
    root = logging.getLogger(ROOT)
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    _handler = handler


@contextmanager
def bind_task(task_id: str, correlation_id: str | None = None, **values: Any) -> Iterator[None]:
    """Every line logged inside carries the task's ids (and ``values``, e.g. the stage)."""
    tokens = structlog.contextvars.bind_contextvars(
        task_id=task_id, correlation_id=correlation_id or task_id, **values
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
