"""Traces: one per task, spans per stage, model call and tool call, with tokens and
outcomes; errors recorded without secrets; OTLP export to a local collector stand-in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from forgeline import redaction
from forgeline.core.events import LlmUsage
from forgeline.observability.config import TelemetryConfig
from forgeline.observability.tracing import (
    Tracing,
    model_span,
    record_usage,
    tool_span,
    trace_id_for,
)
from tests.tools.peers import Peer, Reply
from tests.tools.test_research_step import research_task

TASK = "8b4f9e5725b14c0e9a3d2f6e1c7b5a90"


def test_spans_of_a_task_share_its_trace() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(exporter)

    with tracing.stage(TASK, "planner", trigger="task.initiated") as stage:
        with model_span("planner", "openai:gpt-4o-mini") as model:
            record_usage(
                model,
                LlmUsage(
                    role="planner", model="gpt-4o-mini", input_tokens=120, output_tokens=40,
                    cost_usd=0.002,
                ),
            )  # fmt: skip
        with pytest.raises(RuntimeError), tool_span("fetch", url="https://example.org"):
            raise RuntimeError("robots.txt forbids https://example.org")
        stage.set_attribute("forgeline.outcome", "plan.created")
    # another stage, later (another process would derive the same trace id)
    with tracing.stage(TASK, "coder"):
        pass
    # outside a stage, model and tool spans are no-ops
    with model_span("coder", "x") as loose, tool_span("search") as loose_tool:
        assert not loose.is_recording() and not loose_tool.is_recording()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {
        "stage planner",
        "model openai:gpt-4o-mini",
        "tool fetch",
        "stage coder",
    }
    assert {span.context.trace_id for span in spans.values()} == {int(TASK, 16)}
    planner = spans["stage planner"]
    assert planner.attributes is not None
    assert planner.attributes["forgeline.task_id"] == TASK
    assert planner.attributes["forgeline.outcome"] == "plan.created"
    assert planner.attributes["trigger"] == "task.initiated"
    model = spans["model openai:gpt-4o-mini"]
    assert model.parent is not None and model.parent.span_id == planner.context.span_id
    assert model.attributes is not None
    assert model.attributes["gen_ai.usage.input_tokens"] == 120
    assert model.attributes["gen_ai.usage.output_tokens"] == 40
    tool = spans["tool fetch"]
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.attributes is not None and tool.attributes["forgeline.outcome"] == "error"
    assert tool.attributes["forgeline.error"] == "robots.txt forbids https://example.org"
    # both stages hang from the same task parent
    assert planner.parent is not None and spans["stage coder"].parent is not None
    assert planner.parent.span_id == spans["stage coder"].parent.span_id


def test_an_error_is_recorded_without_its_secrets() -> None:
    key = "sk-abcdefghijklmnopqrstuvwx0123"
    redaction.remember(["collector-secret-value"])
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(exporter)
    with pytest.raises(RuntimeError), tracing.stage(TASK, "tester", url="https://u:pw123456@h/"):
        raise RuntimeError(f"401 Incorrect API key provided: {key} (collector-secret-value)")
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].name == "exception"
    assert span.attributes is not None and span.attributes["error.type"] == "RuntimeError"
    text = repr(span.to_json())
    assert key not in text and "collector-secret-value" not in text and "pw123456" not in text
    assert "Incorrect API key provided: [redacted]" in text


def test_trace_ids() -> None:
    assert trace_id_for(TASK) == int(TASK, 16)
    assert trace_id_for("task-with-a-name") == trace_id_for("task-with-a-name")
    assert 0 < trace_id_for("task-with-a-name") < 2**128


def test_off_unless_configured() -> None:
    tracing = Tracing.from_config(TelemetryConfig())
    assert not tracing.enabled
    with tracing.stage(TASK, "planner") as span:
        assert not span.is_recording()


def _by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


async def test_a_task_traced_through_the_runtime(tmp_path: Path, peer: Peer) -> None:
    exporter = InMemorySpanExporter()
    task_id = (await research_task(tmp_path, peer, tracing=Tracing.with_exporter(exporter))).task_id

    spans = exporter.get_finished_spans()
    assert {span.context.trace_id for span in spans} == {trace_id_for(task_id)}
    named = _by_name(spans)
    stages = {name.removeprefix("stage ") for name in named if name.startswith("stage ")}
    assert stages == {"planner", "architect", "coder", "tester", "reviewer", "deployer"}
    assert len(named["stage coder"]) == 3  # the research step and two code steps
    outcomes = {(span.attributes or {}).get("forgeline.outcome") for span in named["stage coder"]}
    assert outcomes == {"plan.item.completed"}
    [deployer] = named["stage deployer"]
    assert (deployer.attributes or {})["forgeline.outcome"] == "deploy.status"
    # model calls inside their stage, with tokens
    planner_model = [s for s in spans if s.name.startswith("model ") and
                     (s.attributes or {}).get("forgeline.role") == "planner"]  # fmt: skip
    [planner] = named["stage planner"]
    assert planner_model and all(
        s.parent is not None and s.parent.span_id == planner.context.span_id for s in planner_model
    )
    attributes = planner_model[0].attributes or {}
    assert int(attributes["gen_ai.usage.input_tokens"]) > 0
    assert attributes["forgeline.cache_hit"] is False
    # the research step's tool calls inside the coder's span that ran it
    [search] = named["tool search"]
    [research] = named["tool research"]
    assert search.parent is not None and search.parent.span_id == research.context.span_id
    fetches = named["tool fetch"]
    assert all((s.attributes or {})["forgeline.outcome"] == "ok" for s in fetches)
    coder_ids = {s.context.span_id for s in named["stage coder"]}
    assert research.parent is not None and research.parent.span_id in coder_ids


async def test_otlp_export_of_a_task_reaches_the_collector(tmp_path: Path, peer: Peer) -> None:
    collector = Peer()
    collector.route("POST /v1/traces", Reply(200, b"", {"Content-Type": "application/x-protobuf"}))
    with collector:
        telemetry = {
            "otlp_endpoint": f"{collector.url}/v1/traces",
            "otlp_headers": {"x-api-key": "collector-key-0123"},
            "service_name": "forgeline-test",
        }
        # the runtime builds the exporter from [telemetry] and flushes it when it closes
        task_id = (await research_task(tmp_path, peer, telemetry=telemetry)).task_id
        for _ in range(50):
            if collector.requests:
                break
            await asyncio.sleep(0.1)

    assert collector.requests
    names: set[str] = set()
    for request in collector.requests:
        assert request.headers["x-api-key"] == "collector-key-0123"
        sent = ExportTraceServiceRequest.FromString(request.body)
        for resource in sent.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert service["service.name"] == "forgeline-test"
            for scope in resource.scope_spans:
                for span in scope.spans:
                    assert span.trace_id.hex() == f"{trace_id_for(task_id):032x}"
                    names.add(span.name)
    assert {"stage planner", "stage coder", "tool search", "tool fetch"} <= names
    assert any(name.startswith("model ") for name in names)
