"""What `forgeline run` shows while stages work (issue 13: minutes of silence), and the
request read from a file or standard input.

The run goes through the command line (output not a terminal: plain progress lines) with
the scripted todo models, the coder's answers streamed slowly a few characters at a time
and the tests it writes taking a while, so each has a stage.progress line to show.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from forgeline.cli.app import app
from forgeline.cli.live import TaskView
from forgeline.core.events import (
    Event,
    PreviewStopped,
    StageProgress,
    TaskInitiated,
    task_stream,
)
from forgeline.store import SQLiteEventStore
from tests.scripts.todo_project import CONFIG

runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    (path / "forgeline.toml").write_text(CONFIG)
    return path


def lines_of(output: str, stage: str, kind: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(rf" {stage} +{kind} ", line)]


def test_a_slow_model_and_a_slow_test_run_show_progress_then_totals(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TODO_SCRIPT_STREAM", "coder")
    monkeypatch.setenv("TODO_SCRIPT_PAUSE", "0.01")  # about 2 s an answer, a piece at a time
    monkeypatch.setenv("TODO_SCRIPT_SLOW_TESTS", "0.7")
    monkeypatch.setenv("FORGELINE_PROGRESS_INTERVAL", "0.3")
    result = runner.invoke(app, ["run", "todo cli", "-w", str(ws), "--mode", "sequential"])
    assert result.exit_code == 0, result.output
    out = result.output

    # while the coder's model answered: the plan item, the elapsed time, tokens and rate
    coding = lines_of(out, "coder", "stage.progress")
    assert coding, out
    # (the first snapshot of an item may come before its model answers its first piece)
    assert any(
        re.search(r"item [ab] \([^)]*\): \d+\.\d s, model \S+ \d+ tokens", line) for line in coding
    ), coding
    assert any(re.search(r"\d+ tokens at \d+\.\d tokens/s", line) for line in coding), coding
    # while pytest ran: the test count
    testing = lines_of(out, "tester", "stage.progress")
    assert testing, out
    assert all(re.search(r"pytest \d+( of \d+)? tests run", line) for line in testing)
    # what each stage did, once done
    logged = "\n".join(lines_of(out, "coder", "stage.log") + lines_of(out, "tester", "stage.log"))
    assert re.search(r"model \S+ answered \d+ tokens in \d+\.\d s", logged)
    assert "wrote todo.py (" in logged
    assert re.search(r"ran pytest: 5 passed, 0 failed in \d+\.\d s", logged)
    # not a terminal: no more than one plain line per stage run every few seconds
    assert len(testing) <= 2 and len(coding) <= 4
    # the totals at the end
    assert re.search(r"^time     \d+\.\d s$", out, re.M)
    assert re.search(r"^tokens   \d+ \(\d+ in, \d+ out\) in 5 model call\(s\)$", out, re.M)


def progress_event(at: datetime, elapsed: float) -> Event:
    data = StageProgress(
        stage="tester", trigger_id="t1", started_at=at, elapsed_s=elapsed, tests_done=1
    )
    return Event(
        id=f"p{elapsed}",
        stream_id="activity-x",
        version=1,
        position=1,
        data=data,
        correlation_id="x",
        actor="tester",
        created_at=at + timedelta(seconds=elapsed),
    )


def test_plain_progress_lines_come_at_most_every_few_seconds() -> None:
    out = StringIO()
    view = TaskView(Console(file=out, width=200), plain_every=5.0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with view.live():  # not a terminal: plain lines
        for elapsed in (2.0, 4.0, 6.0, 8.0, 12.0):
            view.show(progress_event(start, elapsed))
    shown = [line for line in out.getvalue().splitlines() if "stage.progress" in line]
    assert [re.search(r"(\d+\.\d) s", line).group(1) for line in shown] == ["2.0", "8.0"]  # type: ignore[union-attr]


async def requests_of(ws: Path) -> list[str]:
    async with SQLiteEventStore(ws / ".forgeline" / "forgeline.db") as store:
        rows = await store.tasks()
        out = []
        for row in rows:
            first = (await store.read_stream(task_stream(row.id)))[0].data
            assert isinstance(first, TaskInitiated)
            out.append(first.request)
    return out


REQUEST = (
    'Build a todo CLI.\n\nIt stores items in "todo.json";\n'
    "$HOME, `ticks` and \\ stay as\tthey are.\n"
)


def test_the_request_comes_from_a_file_or_standard_input(ws: Path, tmp_path: Path) -> None:
    request = tmp_path / "request.md"
    request.write_text(REQUEST, encoding="utf-8")
    from_file = runner.invoke(
        app, ["run", "-f", str(request), "-w", str(ws), "--mode", "sequential"]
    )
    assert from_file.exit_code == 0, from_file.output
    from_stdin = runner.invoke(
        app, ["run", "-", "-w", str(ws), "--mode", "sequential"], input=REQUEST
    )
    assert from_stdin.exit_code == 0, from_stdin.output
    assert asyncio.run(requests_of(ws)) == [REQUEST.strip()] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "{bad}"], "is not UTF-8 text (byte 6): save it as UTF-8"),
        (["-f", "{missing}"], "cannot read the request file"),
        (["build it", "-f", "{bad}"], "not both"),
        ([], "give either REQUEST or --from-issue"),
    ],
)
def test_a_bad_request_file_is_refused_before_anything_is_made(
    ws: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"build \xff\xfe a thing")
    paths = {"bad": str(bad), "missing": str(tmp_path / "missing.md")}
    result = runner.invoke(app, ["run", *[a.format(**paths) for a in args], "-w", str(ws)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (ws / ".git").exists() and not (ws / ".forgeline").exists()


def test_on_a_terminal_running_stages_are_drawn_live_and_end_with_their_result() -> None:
    out = StringIO()
    view = TaskView(Console(file=out, width=200, force_terminal=True))
    start = datetime.now(UTC)
    with view.live():
        view.show(progress_event(start, 2.0))
        assert list(view.running) == [("tester", "t1")]
        time.sleep(0.6)  # a redraw or two (four a second)
        drawn = out.getvalue()
        result = progress_event(start, 3.0).model_copy(
            update={"causation_id": "t1", "data": PreviewStopped(pid=1)}
        )
        view.show(result)  # the stage's result, caused by the run's trigger
        assert view.running == {}
    assert "tester" in drawn and "pytest 1 tests run" in drawn
    assert "stage.progress" not in out.getvalue()  # drawn, never printed as a line
