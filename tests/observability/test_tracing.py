"""Traces: one per task, spans per stage, model call and tool call, OTLP export to a
local collector stand-in."""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from forgeline.core.events import LlmUsage, PageFetched
from forgeline.observability.config import TelemetryConfig
from forgeline.observability.tracing import (
    Tracing,
    record_tool,
    record_usage,
    trace_id_for,
)
from tests.tools.peers import Peer, Reply

TASK = "8b4f9e5725b14c0e9a3d2f6e1c7b5a90"


def test_spans_of_a_task_share_its_trace() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(exporter)

    with tracing.stage(TASK, "planner", trigger="task.initiated") as stage:
        with tracing.model_call("planner", "openai:gpt-4o-mini") as model:
            record_usage(
                model,
                LlmUsage(
                    role="planner", model="gpt-4o-mini", input_tokens=120, output_tokens=40,
                    cost_usd=0.002,
                ),
            )  # fmt: skip
        with tracing.tool_call("fetch", url="https://example.org") as tool:
            record_tool(tool, PageFetched(url="https://example.org", error="robots.txt forbids"))
        stage.set_attribute("forgeline.outcome", "plan.created")
    # another stage, later (another process would derive the same trace id)
    with tracing.stage(TASK, "coder"):
        pass

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
    # both stages hang from the same task parent
    assert planner.parent is not None and spans["stage coder"].parent is not None
    assert planner.parent.span_id == spans["stage coder"].parent.span_id


def test_a_failing_stage_is_an_error_span() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(exporter)
    with pytest.raises(RuntimeError), tracing.stage(TASK, "tester"):
        raise RuntimeError("sandbox broke")
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].name == "exception"


def test_trace_ids() -> None:
    assert trace_id_for(TASK) == int(TASK, 16)
    assert trace_id_for("task-with-a-name") == trace_id_for("task-with-a-name")
    assert 0 < trace_id_for("task-with-a-name") < 2**128


def test_off_unless_configured() -> None:
    tracing = Tracing.from_config(TelemetryConfig())
    assert not tracing.enabled
    with tracing.stage(TASK, "planner") as span:
        assert not span.is_recording()


def test_otlp_export_reaches_the_collector(peer: Peer) -> None:
    peer.route("POST /v1/traces", Reply(200, b"", {"Content-Type": "application/x-protobuf"}))
    config = TelemetryConfig(
        otlp_endpoint=f"{peer.url}/v1/traces",
        otlp_headers={"x-api-key": "collector-key"},  # type: ignore[dict-item]
        service_name="forgeline-test",
    )
    tracing = Tracing.from_config(config)
    with tracing.stage(TASK, "deployer"):
        pass
    tracing.shutdown()  # flushes the batch

    for _ in range(50):
        if peer.requests:
            break
        time.sleep(0.1)
    [request] = peer.requests
    assert request.headers["x-api-key"] == "collector-key"
    sent = ExportTraceServiceRequest.FromString(request.body)
    [resource] = sent.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "forgeline-test"
    [span] = [s for scope in resource.scope_spans for s in scope.spans]
    assert span.name == "stage deployer"
    assert span.trace_id.hex() == TASK
