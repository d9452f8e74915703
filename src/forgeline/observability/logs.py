"""Structured logs with structlog: task and correlation ids bound, JSON lines when stderr
is not a terminal (a service, a pipe), readable lines on a terminal, secrets masked.

``configure_logging`` is called once by an entry point; ``bind_task`` binds a task's ids
to every line logged inside it (context variables, so concurrent stage runs keep their
own); ``secrets_of`` collects every secret in the settings, so that a value that slips
into a log line is printed as ``***``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from pydantic import BaseModel, SecretStr

from forgeline.observability.config import TelemetryConfig

__all__ = ["bind_task", "configure_logging", "get_logger", "secrets_of"]

MASK = "***"


class _Redact:
    """A processor that masks the given secret values wherever they appear."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            return {k: self._mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._mask(v) for v in value)
        return value

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event
        return {key: self._mask(value) for key, value in event.items()}


def secrets_of(model: BaseModel, environ: dict[str, str] | None = None) -> list[str]:
    """Every ``SecretStr`` in ``model`` (settings, nested), and the values of the
    environment variables its ``*_env`` fields name."""
    env = os.environ if environ is None else environ
    found: list[str] = []

    def walk(value: Any, name: str = "") -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field), field)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, name)
        elif isinstance(value, str) and name.endswith("_env") and env.get(value):
            found.append(env[value])

    walk(model)
    return found


def configure_logging(
    config: TelemetryConfig, *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    out = stream or sys.stderr
    fmt = config.log_format
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _Redact(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[config.log_level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "forgeline") -> Any:
    return structlog.get_logger(name)


@contextmanager
def bind_task(task_id: str, correlation_id: str | None = None, **values: Any) -> Iterator[None]:
    """Every line logged inside carries the task's ids (and ``values``, e.g. the stage)."""
    with structlog.contextvars.bound_contextvars(
        task_id=task_id, correlation_id=correlation_id or task_id, **values
    ):
        yield
