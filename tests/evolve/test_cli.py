"""``forgeline evolve`` and ``forgeline changes`` in process: a cycle from the command
line, the changes listed and shown, and clear errors for bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from forgeline.core.events import (
    EVOLVE_STREAM,
    CycleRecorded,
    NewEvent,
    RSITaskRejected,
    SignalCounts,
    ctrm_stream,
)
from forgeline.store import SQLiteEventStore
from tests.evolve import project
from tests.evolve.harness import cli


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def test_evolve_once_runs_a_cycle_and_changes_lists_what_it_did(tmp_path: Path) -> None:
    repo = project.make_repository(tmp_path)
    (repo / "forgeline.toml").write_text(project.CONFIG)  # uncommitted: not scanned
    done = cli("evolve", "--once", "--workspace", str(repo), "--unsafe-no-sandbox")
    assert done.exit_code == 0, done.output
    assert "cycle 1 on main" in done.output and "1 failing test(s)" in done.output
    assert "RSI-1.1 completed" in done.output
    listed = cli("changes", "--workspace", str(repo))
    assert listed.exit_code == 0, listed.output
    assert all(word in listed.output for word in ("RSI-1.1", "completed", "calc.py"))
    shown = cli("changes", "show", "RSI-1.1", "--workspace", str(repo))
    assert shown.exit_code == 0, shown.output
    assert "1 failing / 2 passing tests" in shown.output  # before
    assert "0 failing / 3 passing tests" in shown.output  # after
    assert "regressions  none" in shown.output
    assert project.git(repo, "show", "main:calc.py") == project.CALC


def test_bad_input_gets_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    repo = project.make_repository(tmp_path)
    both = cli("evolve", "--once", "--interval", "10m", "--workspace", str(repo))
    assert both.exit_code == 2 and "not both" in both.output
    vague = cli("evolve", "--interval", "soon", "--workspace", str(repo))
    assert vague.exit_code == 2 and "not a duration" in vague.output
    nothing = cli("changes", "show", "RSI-1.1", "--workspace", str(repo))
    assert nothing.exit_code == 2 and "no forgeline store" in nothing.output
    odd = cli("changes", "--status", "weird", "--workspace", str(repo))
    assert odd.exit_code == 2 and "unknown status weird" in odd.output

    asyncio.run(record_a_rejected_change(repo))
    unknown = cli("changes", "show", "RSI-9.9", "--workspace", str(repo))
    assert unknown.exit_code == 2 and "no change 'RSI-9.9'" in unknown.output
    failed = cli("changes", "approve", "RSI-1.1", "--workspace", str(repo))
    assert failed.exit_code == 2 and "only a completed change can be merged" in failed.output
    shown = cli("changes", "show", "RSI-1.1", "--workspace", str(repo))
    assert shown.exit_code == 0 and "invalid RSITask: priority" in shown.output
    assert "Traceback" not in failed.output + shown.output


async def record_a_rejected_change(repo: Path) -> None:
    async with SQLiteEventStore(repo / ".forgeline" / "forgeline.db") as store:
        cycle = CycleRecorded(
            cycle=1,
            repository="proj",
            branch="main",
            commit="c" * 40,
            counts=SignalCounts(goals=1),
            rejected=("RSI-1.1",),
        )
        rejected = RSITaskRejected(
            change_id="RSI-1.1",
            cycle=1,
            repository="proj",
            raw="{}",
            reason="invalid RSITask: priority: Input should be less than or equal to 10",
        )
        for stream, data in ((EVOLVE_STREAM, cycle), (ctrm_stream("RSI-1.1"), rejected)):
            event = NewEvent(stream_id=stream, data=data, correlation_id="proj", actor="test")
            await store.append(stream, [event])
