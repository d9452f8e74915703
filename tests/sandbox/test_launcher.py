"""The launcher's report as forgeline reads it: lines it trusts, lines it ignores.

The launcher itself runs in every spawner test (``test_local.py``, ``test_contract.py``);
here its report pipe is written by the test, to check the reading on its own.
"""

from __future__ import annotations

import os

from forgeline.sandbox.launcher import LaunchReport


def report_of(data: bytes, *, close: bool = True) -> tuple[LaunchReport, int]:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    if close:
        os.close(write_end)
    report = LaunchReport(read_end)
    report.read()
    return report, write_end


def test_the_report_gives_pid_start_and_exit_and_ignores_the_rest() -> None:
    lines = b"hello\npid 12\npid 99\nstarted\nexit 256 0.5 0.25 2048\nexit 0 0 0 1\n"
    report, _ = report_of(lines)
    assert report.pid == 12
    assert report.started is True
    assert report.exit is not None
    assert report.exit.exit_code == 1
    assert report.exit.cpu_s == 0.75
    assert report.exit.peak_memory_bytes == 2 * 1024**2
    report.close()


def test_a_line_counts_only_once_it_is_complete() -> None:
    report, write_end = report_of(b"pid 7", close=False)
    assert report.pid is None
    os.write(write_end, b"\nfailed\nexit 9 x 0 1\n")
    report.read()
    assert (report.pid, report.started, report.exit) == (7, False, None)
    os.close(write_end)
    report.close()


async def test_a_launcher_that_dies_before_starting_the_command_did_not_start_it() -> None:
    report, _ = report_of(b"pid 5\n")
    assert await report.wait_started() is False
    report.close()


async def test_waiting_for_the_start_ends_when_the_line_arrives() -> None:
    read_end, write_end = os.pipe()
    report = LaunchReport(read_end)
    os.write(write_end, b"pid 5\nstarted\n")
    assert await report.wait_started() is True
    os.close(write_end)
    report.close()


def test_a_flood_is_not_read_past_its_bound() -> None:
    report, _ = report_of(b"x" * 20_000 + b"\npid 3\n")  # fits in a pipe
    assert report.pid is None
    report.close()
