"""OpenTelemetry traces: one trace per task, a span per stage and per model and tool call.

A task's trace id is derived from its correlation id (the task id), so the spans of one
task share a trace whichever process or worker records them: every stage span's parent
is a remote span context built from that id. ``Tracing.from_config`` exports over
OTLP/HTTP when ``[telemetry] otlp_endpoint`` is set; otherwise its tracer is OpenTelemetry's
no-op tracer, and the helpers cost next to nothing. Nothing is set globally: the runtime
builds one ``Tracing`` and hands it to whoever records spans.

Attributes: ``forgeline.task_id``, ``forgeline.stage``, ``forgeline.outcome``; model calls
follow the GenAI conventions (``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``) plus ``forgeline.cost_usd`` and ``forgeline.cache_hit``;
tool calls ``forgeline.tool`` and ``forgeline.error``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

from forgeline.core.events import LlmUsage, ToolEventData
from forgeline.observability.config import TelemetryConfig

__all__ = ["Tracing", "record_tool", "record_usage", "task_span_context", "trace_id_for"]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


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
        """Export what is pending and stop (at the end of a process)."""
        if self.provider is not None:
            self.provider.shutdown()

    @contextmanager
    def stage(self, task_id: str, stage: str, **attributes: Any) -> Iterator[Span]:
        """A stage's run on one trigger, in the task's trace. An exception marks it as
        an error; set ``forgeline.outcome`` on the span to say how it ended."""
        parent = trace.set_span_in_context(NonRecordingSpan(task_span_context(task_id)))
        token = otel_context.attach(parent)
        try:
            with self.tracer.start_as_current_span(
                f"stage {stage}",
                attributes={"forgeline.task_id": task_id, "forgeline.stage": stage, **attributes},
            ) as span:
                yield span
        finally:
            otel_context.detach(token)

    @contextmanager
    def model_call(self, role: str, model: str) -> Iterator[Span]:
        """A model call inside the current stage span; ``record_usage`` fills it in."""
        with self.tracer.start_as_current_span(
            f"model {model}",
            kind=trace.SpanKind.CLIENT,
            attributes={"forgeline.role": role, "gen_ai.request.model": model},
        ) as span:
            yield span

    @contextmanager
    def tool_call(self, tool: str, **attributes: Any) -> Iterator[Span]:
        """A tool call inside the current span; ``record_tool`` fills it in."""
        with self.tracer.start_as_current_span(
            f"tool {tool}", attributes={"forgeline.tool": tool, **attributes}
        ) as span:
            yield span


def record_usage(span: Span, usage: LlmUsage) -> None:
    span.set_attributes(
        {
            "gen_ai.response.model": usage.model,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "forgeline.cost_usd": usage.cost_usd,
            "forgeline.cache_hit": usage.cache_hit,
        }
    )


def record_tool(span: Span, data: ToolEventData) -> None:
    """A tool's ``tool.*`` record on its span: the outcome, and an error as the status."""
    error = getattr(data, "error", None)
    span.set_attribute("forgeline.event", data.type)
    span.set_attribute("forgeline.outcome", "error" if error else "ok")
    if error:
        span.set_attribute("forgeline.error", error)
        span.set_status(Status(StatusCode.ERROR, error))
