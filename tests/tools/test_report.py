"""Task reports from a task run through the pipeline on scripted models."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from forgeline.core.events import NewEvent, TaskInitiated, task_stream
from forgeline.errors import TaskNotFoundError
from forgeline.store.base import EventStore
from forgeline.tools.report.html import render_html
from forgeline.tools.report.model import load_report
from forgeline.tools.report.pdf import render_pdf
from tests.tools.conftest import FinishedTask


def pdf_text(data: bytes) -> tuple[str, PdfReader]:
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return " ".join(text.split()), reader


async def test_report_reads_the_task(finished_task: FinishedTask) -> None:
    report = await load_report(finished_task.store, finished_task.task_id, finished_task.workspaces)

    assert report.state.status == "completed"
    assert {c.path for c in report.changes} >= {"todo.py", "test_todo.py"}
    todo = next(c for c in report.changes if c.path == "todo.py")
    assert todo.added and todo.added > 10 and todo.deleted == 0
    assert len(report.commits) >= 3
    assert report.test_summary().startswith("2 passed, 0 failed")
    total = report.total
    assert total is not None and total.calls >= 4
    assert total.input_tokens > 0
    stages = {s.stage: s for s in report.stages}
    assert {"planner", "architect", "coder", "tester", "reviewer", "deployer"} <= set(stages)
    assert stages["planner"].tokens > 0 and stages["tester"].tokens == 0
    assert stages["tester"].seconds > 0


async def test_pdf_holds_request_tests_usage_and_chart(finished_task: FinishedTask) -> None:
    report = await load_report(finished_task.store, finished_task.task_id, finished_task.workspaces)

    data = render_pdf(report)

    assert data.startswith(b"%PDF-")
    text, reader = pdf_text(data)
    assert "build a todo CLI that stores items in todo.json" in text
    assert report.test_summary() in text
    assert report.usage_summary() in text
    assert "approved" in text and "cli ok" in text
    assert "todo.py" in text
    images = [(number, image) for number, page in enumerate(reader.pages) for image in page.images]
    assert len(images) == 1
    number, image = images[0]
    chart = Image.open(io.BytesIO(image.data))
    assert chart.width == 1200 and chart.height > 200
    assert "Time and tokens per stage" in " ".join(reader.pages[number].extract_text().split())


async def test_html_report(finished_task: FinishedTask) -> None:
    report = await load_report(finished_task.store, finished_task.task_id, finished_task.workspaces)
    html = render_html(report)
    assert "build a todo CLI that stores items in todo.json" in html
    assert report.test_summary() in html
    assert 'src="data:image/png;base64,iVBOR' in html


async def test_unicode_and_markup_in_the_request(store: EventStore, tmp_path: Path) -> None:
    request = "Ein Tool für «Größen» — <script>alert(1)</script> ✓"
    event = NewEvent(
        stream_id=task_stream("t1"),
        data=TaskInitiated(
            request=request, repository="ws", branch="forgeline/t1", base_commit="abc"
        ),
        correlation_id="t1",
        actor="user",
    )
    await store.append(task_stream("t1"), [event])
    report = await load_report(store, "t1")

    text, _ = pdf_text(render_pdf(report))
    assert request in text
    assert "no tests were run" in text and "no model calls" in text
    html = render_html(report)
    assert "&lt;script&gt;" in html and "<script>" not in html


async def test_unknown_task(store: EventStore) -> None:
    with pytest.raises(TaskNotFoundError, match="forgeline tasks"):
        await load_report(store, "nope")
