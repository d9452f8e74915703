"""OpenTelemetry traces: one trace per task, a span per stage and per model and tool call.

A task's trace id is derived from its correlation id (the task id), so the spans of one
task share a trace whichever process or worker records them: every stage span's parent
is a remote span context built from that id. ``Tracing.from_config`` exports over
OTLP/HTTP when ``[telemetry] otlp_endpoint`` is set; otherwise its tracer is OpenTelemetry's
no-op tracer, and the helpers cost next to nothing. Nothing is set globally: the runtime
builds one ``Tracing`` (``Services.tracing``).

The stage span (``Tracing.stage``, opened by ``StageAgent.process_direct``) carries its
``Tracing`` in the OpenTelemetry context, so the spans opened inside it, on the same task
of the event loop, need nothing handed down: ``model_span`` (``MeteredModel.request``),
``tool_span`` and the ``traced`` decorator of the tools' calls. Outside a stage they are
no-ops.

Attributes: ``forgeline.task_id``, ``forgeline.stage``, ``forgeline.outcome``; model calls
follow the GenAI conventions (``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``) plus ``forgeline.cost_usd`` and ``forgeline.cache_hit``;
tool calls ``forgeline.tool``, ``forgeline.operation`` and ``forgeline.error``. Every
string attribute and every error description passes through the process's redactor
(``forgeline.redaction``), and exceptions are recorded as their type and redacted
message, never with their raw text.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
)

from forgeline import redaction
from forgeline.core.events import LlmUsage
from forgeline.observability.config import TelemetryConfig

__all__ = [
    "Tracing",
    "model_span",
    "record_usage",
    "task_span_context",
    "tool_span",
    "trace_id_for",
    "traced",
]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_TRACING = otel_context.create_key("forgeline-tracing")

P = ParamSpec("P")
R = TypeVar("R")


def trace_id_for(correlation_id: str) -> int:
    """The trace id of a task: its id itself when that is 32 hex digits (a uuid), else
    128 bits of its SHA-256."""
    text = correlation_id.lower()
    value = int(text, 16) if _HEX32.match(text) else 0
    return value or int(hashlib.sha256(correlation_id.encode()).hexdigest()[:32], 16)


def task_span_context(correlation_id: str) -> SpanContext:
    """The remote parent every span of the task hangs from."""
    span_id = int(hashlib.sha256(f"task:{correlation_id}".encode()).hexdigest()[:16], 16) or 1
    return SpanContext(
        trace_id=trace_id_for(correlation_id),
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as OpenTelemetry takes them: None left out, strings redacted."""
    redactor = redaction.current()
    return {
        key: redactor.text(value) if isinstance(value, str) else value
        for key, value in attributes.items()
        if value is not None
    }


class Tracing:
    """The tracer and the span helpers."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.tracer: trace.Tracer = (
            provider.get_tracer("forgeline") if provider is not None else trace.NoOpTracer()
        )

    @classmethod
    def from_config(cls, config: TelemetryConfig) -> Tracing:
        if not config.otlp_endpoint:
            return cls()
        exporter = OTLPSpanExporter(
            endpoint=config.otlp_endpoint,
            headers={k: v.get_secret_value() for k, v in config.otlp_headers.items()},
        )
        return cls.with_exporter(exporter, config.service_name, batch=True)

    @classmethod
    def with_exporter(
        cls, exporter: SpanExporter, service_name: str = "forgeline", *, batch: bool = False
    ) -> Tracing:
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def shutdown(self) -> None:
        """Export what is pending and stop (when the runtime closes)."""
        if self.provider is not None:
            self.provider.shutdown()

    @contextmanager
    def stage(self, task_id: str, stage: str, **attributes: Any) -> Iterator[Span]:
        """A stage's run on one trigger (or any unit of a task's work), in the task's
        trace. An exception marks it as an error; set ``forgeline.outcome`` on the span
        to say how it ended. Model and tool spans inside it use this ``Tracing``."""
        if self.provider is None:  # off: nothing to record, and nothing inside either
            yield INVALID_SPAN
            return
        parent = trace.set_span_in_context(NonRecordingSpan(task_span_context(task_id)))
        token = otel_context.attach(otel_context.set_value(_TRACING, self, parent))
        try:
            with self._span(
                f"stage {stage}",
                {"forgeline.task_id": task_id, "forgeline.stage": stage, **attributes},
            ) as span:
                yield span
        finally:
            otel_context.detach(token)

    @contextmanager
    def model_call(self, role: str, model: str) -> Iterator[Span]:
        """A model call inside the current stage span; ``record_usage`` fills it in."""
        attributes = {"forgeline.role": role, "gen_ai.request.model": model}
        with self._span(f"model {model}", attributes, trace.SpanKind.CLIENT) as span:
            yield span

    @contextmanager
    def tool_call(self, tool: str, **attributes: Any) -> Iterator[Span]:
        """A tool call inside the current span: ``forgeline.outcome`` ``ok``, or
        ``error`` with ``forgeline.error`` when it raises."""
        with self._span(f"tool {tool}", {"forgeline.tool": tool, **attributes}) as span:
            yield span
            span.set_attribute("forgeline.outcome", "ok")

    @contextmanager
    def _span(
        self,
        name: str,
        attributes: Mapping[str, Any],
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    ) -> Iterator[Span]:
        with self.tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=_clean(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                _failed(span, exc)
                raise


def _failed(span: Span, exc: BaseException) -> None:
    """``exc`` on ``span``: its type and redacted message, never its raw text."""
    kind = type(exc).__name__
    message = redaction.current().text(str(exc))[:2000]
    span.set_attributes(
        {"forgeline.outcome": "error", "forgeline.error": message or kind, "error.type": kind}
    )
    span.add_event("exception", {"exception.type": kind, "exception.message": message})
    span.set_status(Status(StatusCode.ERROR, message or kind))


def _current() -> Tracing | None:
    value = otel_context.get_value(_TRACING)
    return value if isinstance(value, Tracing) else None


@contextmanager
def model_span(role: str, model: str) -> Iterator[Span]:
    """A model call's span in the current stage's trace (a no-op outside a stage)."""
    tracing = _current()
    if tracing is None:
        yield INVALID_SPAN
        return
    with tracing.model_call(role, model) as span:
        yield span


@contextmanager
def tool_span(tool: str, **attributes: Any) -> Iterator[Span]:
    """A tool call's span in the current stage's trace (a no-op outside a stage)."""
    tracing = _current()
    if tracing is None:
        yield INVALID_SPAN
        return
    with tracing.tool_call(tool, **attributes) as span:
        yield span


def traced(tool: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a tool's async method: each call is a ``tool <tool>`` span with the
    method's name as ``forgeline.operation``."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        operation = method.__name__

        @functools.wraps(method)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            with tool_span(tool, **{"forgeline.operation": operation}):
                return await method(*args, **kwargs)

        return call

    return decorate


def record_usage(span: Span, usage: LlmUsage) -> None:
    """One model call's usage on its span (``Meter.record`` puts it on the current one)."""
    span.set_attributes(
        {
            "gen_ai.response.model": usage.model,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "forgeline.cost_usd": usage.cost_usd,
            "forgeline.cache_hit": usage.cache_hit,
        }
    )
