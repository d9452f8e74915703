"""The terminal tool: the allowlist (allow, deny, the rule named), real runs with their
resource usage, and the ``tool.command`` events they leave.

The rule tests are pure. The runs are real processes: ``LocalSpawner`` for the fast ones,
``BwrapSandbox`` for those marked ``sandbox`` (they fail, never skip, without bubblewrap).
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forgeline.cli.render import describe
from forgeline.config import TerminalConfig, load_settings
from forgeline.core.events import (
    DeployStatus,
    NewEvent,
    TestResults,
    ToolCommand,
    parse_data,
    task_stream,
)
from forgeline.errors import ConfigError
from forgeline.sandbox.bwrap import BwrapSandbox
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import ProcessSpawner
from forgeline.store import SQLiteEventStore
from forgeline.tools.terminal import (
    CONFINE_RULE,
    Rule,
    Terminal,
    TerminalError,
    check_command,
    command_events,
)

MIB = 1024**2
# Burns about 0.6 s of CPU time, then exits.
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6:\n    pass\n"
# Holds 200 MiB of written (resident) memory for half a second.
ALLOCATE = "import time\nblock = b'x' * (200 * 1024 * 1024)\ntime.sleep(0.5)\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("hello\n")
    return ws


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("argv", "rule"),
    [
        (["git", "status", "--short"], "git status"),
        (["pytest", "-q", "tests"], "pytest"),
        (["python", "-m", "pytest"], "python"),
        (["pip", "install", "requests"], "pip install"),
        (["ls", "-la"], "ls"),
        (["ruff", "check", "."], "ruff check"),
    ],
)
def test_the_default_allowlist_names_the_rule_that_allows(
    argv: list[str], rule: str, workspace: Path
) -> None:
    verdict = check_command(argv, TerminalConfig(), workspace)
    assert verdict.allowed
    assert verdict.rule == rule
    assert repr(rule) in verdict.reason


@pytest.mark.parametrize(
    ("argv", "rule"),
    [
        (["find", ".", "-name", "*.py", "-exec", "rm", "{}", ";"], "find ... -exec*"),
        (["find", ".", "-delete"], "find ... -delete"),
        (["git", "push", "origin", "main"], "git push"),
        (["git", "-c", "core.pager=sh", "log"], "git -c"),
        (["git", "diff", "--output=x.patch"], "git ... --output*"),
        (["bash", "-c", "ls"], "bash"),
        (["sudo", "ls"], "sudo"),
        (["curl", "https://example.com"], "curl"),
    ],
)
def test_a_denied_command_names_the_rule_that_denied_it(
    argv: list[str], rule: str, workspace: Path
) -> None:
    verdict = check_command(argv, TerminalConfig(), workspace)
    assert not verdict.allowed
    assert verdict.rule == rule
    assert verdict.reason == f"denied by the rule {rule!r}"


def test_deny_wins_over_allow() -> None:
    config = TerminalConfig(extra_allow=("find", "bash"))
    assert check_command(["find", ".", "-exec", "id", ";"], config).rule == "find ... -exec*"
    assert not check_command(["bash"], config).allowed


@pytest.mark.parametrize(
    "argv",
    [["rm", "-rf", "build"], ["git", "commit", "-m", "x"], ["./python"], ["/usr/bin/python"]],
)
def test_a_command_no_rule_allows_is_refused_saying_so(argv: list[str]) -> None:
    verdict = check_command(argv, TerminalConfig())
    assert not verdict.allowed
    assert verdict.rule is None
    assert "no rule allows" in verdict.reason


def test_a_shell_line_in_one_argument_gets_a_hint() -> None:
    verdict = check_command(["ls -la"], TerminalConfig())
    assert not verdict.allowed
    assert "['ls', '-la']" in verdict.reason


def test_rule_syntax_globs_and_any_arguments() -> None:
    rule = Rule.parse("git ... --output*")
    assert rule.words == ("git", "...", "--output*")
    assert rule.matches(["git", "log", "-p", "--output=/x"])
    assert rule.matches(["git", "--output", "x"])
    assert not rule.matches(["git", "log"])
    assert Rule.parse("pip install").matches(["pip", "install", "-U", "x"])
    assert not Rule.parse("pip install").matches(["pip", "uninstall", "x"])
    assert Rule.parse("'my tool' run").matches(["my tool", "run"])


@pytest.mark.parametrize("arg", ["/etc/passwd", "../outside.txt", "sub/../../x", "--file=/etc/x"])
def test_paths_outside_the_workspace_are_refused(workspace: Path, arg: str) -> None:
    verdict = check_command(["cat", arg], TerminalConfig(), workspace)
    assert not verdict.allowed
    assert verdict.rule == CONFINE_RULE
    assert repr(arg) in verdict.reason


def test_a_symlink_leading_out_is_refused_and_paths_inside_are_fine(
    workspace: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("s3cret")
    (workspace / "link").symlink_to(tmp_path / "secret")
    assert check_command(["cat", "link"], TerminalConfig(), workspace).rule == CONFINE_RULE
    for arg in ("notes.txt", "./sub/../notes.txt", str(workspace / "notes.txt"), "-q"):
        assert check_command(["cat", arg], TerminalConfig(), workspace).allowed, arg
    relaxed = TerminalConfig(confine_paths=False)
    assert check_command(["cat", "/etc/hostname"], relaxed, workspace).allowed


def test_the_terminal_table_of_forgeline_toml(tmp_path: Path) -> None:
    (tmp_path / "forgeline.toml").write_text(
        '[terminal]\nextra_allow = ["make test"]\nextra_deny = ["pytest --lf"]\n'
        "timeout = 30\ninstalls = false\n"
    )
    config = load_settings(tmp_path).terminal
    assert config.timeout == 30
    assert config.installs is False
    assert check_command(["make", "test"], config).rule == "make test"
    assert check_command(["pytest", "--lf"], config).rule == "pytest --lf"
    assert check_command(["git", "status"], config).allowed  # the defaults stay

    (tmp_path / "forgeline.toml").write_text('[terminal]\nallow = ["make"]\n')
    replaced = load_settings(tmp_path).terminal
    assert not check_command(["git", "status"], replaced).allowed
    assert check_command(["make"], replaced).allowed

    (tmp_path / "forgeline.toml").write_text('[terminal]\nallow = ["... x"]\n')
    with pytest.raises(ConfigError, match="must start with a program name"):
        load_settings(tmp_path)
    (tmp_path / "forgeline.toml").write_text('[terminal]\nallow = ["git \'status"]\n')
    with pytest.raises(ConfigError, match="terminal rule"):
        load_settings(tmp_path)


# --------------------------------------------------------------------------- runs


async def test_strings_are_never_commands(workspace: Path) -> None:
    terminal = Terminal(workspace, LocalSpawner())
    with pytest.raises(TerminalError, match="never a shell string"):
        await terminal.run("ls -la")  # type: ignore[arg-type]
    with pytest.raises(TerminalError, match="non-empty"):
        await terminal.run([])


async def test_a_denied_command_does_not_run_and_is_recorded(workspace: Path) -> None:
    config = TerminalConfig(extra_deny=("python -c",))
    terminal = Terminal(workspace, LocalSpawner(), config)
    outcome = await terminal.run(["python", "-c", "open('ran', 'w').close()"])
    assert not outcome.allowed
    assert outcome.rule == "python -c"
    assert not (workspace / "ran").exists()
    assert outcome.exit_code is None and outcome.usage is None
    assert "refused: denied by the rule 'python -c'" in outcome.answer()
    [record] = terminal.commands
    assert record.denied and record.rule == "python -c" and record.usage is None


async def test_an_allowed_command_runs_in_the_workspace(workspace: Path) -> None:
    terminal = Terminal(workspace, LocalSpawner())
    outcome = await terminal.run(["cat", "notes.txt"])
    assert outcome.ok
    assert outcome.rule == "cat"
    assert outcome.output == "hello\n"
    outcome = await terminal.run(["python", "-c", "import os; print(os.getcwd())"])
    assert outcome.output.strip() == str(workspace.resolve())
    missing = await terminal.run(["python", "-c", "import sys; sys.exit(3)"])
    assert missing.exit_code == 3 and not missing.ok
    assert "[exit code 3]" in missing.answer()


async def _usage_checks(spawner: ProcessSpawner, workspace: Path) -> None:
    terminal = Terminal(workspace, spawner)
    burn = await terminal.run(["python", "-c", BURN])
    assert burn.ok, burn.output
    assert burn.usage is not None
    assert burn.usage.cpu_s is not None and 0.4 < burn.usage.cpu_s < 30
    assert burn.usage.wall_s >= burn.usage.cpu_s * 0.5
    allocate = await terminal.run(["python", "-c", ALLOCATE])
    assert allocate.ok, allocate.output
    assert allocate.usage is not None and allocate.usage.peak_memory_bytes is not None
    assert allocate.usage.peak_memory_bytes > 200 * MIB
    assert allocate.usage.peak_memory_bytes < 2048 * MIB
    small = await terminal.run(["python", "-c", "pass"])
    assert small.usage is not None and small.usage.peak_memory_bytes is not None
    assert small.usage.peak_memory_bytes < 200 * MIB
    # The record keeps the numbers.
    record = terminal.commands[0].usage
    assert record is not None and record.cpu_s is not None and record.cpu_s > 0.4


async def test_local_runs_report_cpu_and_peak_memory(workspace: Path) -> None:
    await _usage_checks(LocalSpawner(), workspace)
    result = await LocalSpawner().run(["true"], cwd=workspace)
    assert result.usage is not None and result.usage.mechanism == "none"


@pytest.mark.sandbox
@pytest.mark.usefixtures("bwrap_ready")
async def test_sandboxed_runs_report_cpu_and_peak_memory(workspace: Path) -> None:
    await _usage_checks(BwrapSandbox(), workspace)


@pytest.mark.sandbox
@pytest.mark.usefixtures("bwrap_ready")
async def test_sandboxed_runs_without_cgroups_report_usage_too(workspace: Path) -> None:
    await _usage_checks(BwrapSandbox(use_cgroups=False), workspace)


@pytest.mark.sandbox
@pytest.mark.usefixtures("bwrap_ready")
async def test_git_in_a_worktree_reads_history_but_not_the_config(tmp_path: Path) -> None:
    repo = tmp_path / "repo"

    def git(*args: str, cwd: Path = repo) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    repo.mkdir()
    git("init", "-q", "-b", "main")
    git("remote", "add", "origin", "https://user:hunter2-token@example.invalid/x.git")
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first commit")
    worktree = repo / ".forgeline" / "worktrees" / "t1"
    git("worktree", "add", "-q", "-b", "forgeline/t1", str(worktree))
    (worktree / "a.txt").write_text("two\n")

    terminal = Terminal(worktree, BwrapSandbox())
    log = await terminal.run(["git", "log", "--oneline"])
    assert log.ok, log.output
    assert "first commit" in log.output
    status = await terminal.run(["git", "status", "--short"])
    assert status.ok and "a.txt" in status.output
    diff = await terminal.run(["git", "diff"])
    assert "+two" in diff.output
    # Other commands do not see the repository's git data at all.
    peek = await terminal.run(
        ["python", "-c", f"print(open({str(repo / '.git' / 'config')!r}).read())"]
    )
    assert not peek.ok and "No such file" in peek.output
    remote = await terminal.run(["git", "remote", "-v"])
    assert remote.rule == "git remote" and not remote.allowed
    # git sees the repository's config without its remotes and credentials (even when a
    # project allows `git config`).
    lenient = Terminal(worktree, BwrapSandbox(), TerminalConfig(deny=(), extra_allow=("git",)))
    listed = await lenient.run(["git", "config", "--list"])
    assert listed.ok, listed.output
    assert "core.repositoryformatversion=0" in listed.output
    assert "hunter2" not in listed.output and "remote.origin" not in listed.output
    # The host's git still has it all.
    assert "hunter2" in (repo / ".git" / "config").read_text()


# --------------------------------------------------------------------------- events


async def test_commands_become_tool_command_events_with_the_result(
    workspace: Path, tmp_path: Path
) -> None:
    terminal = Terminal(workspace, LocalSpawner())
    await terminal.run(["python", "-c", "print('hi')"])
    await terminal.run(["rm", "notes.txt"])
    await terminal.run(["python", "-c", "print('again')"])
    assert (workspace / "notes.txt").exists()

    trigger = "t" * 32
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = terminal.events(
        stream_id=task_stream("abc"),
        correlation_id="abc",
        causation_id=trigger,
        actor="coder",
        created_at=at,
    )
    assert [e.causation_id for e in events] == [trigger, events[0].id, events[1].id]
    result = NewEvent(
        stream_id=task_stream("abc"),
        data=TestResults(commit="c" * 40, passed=1, failed=0),
        correlation_id="abc",
        causation_id=trigger,
        actor="tester",
        created_at=at,
    )
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.open()
    try:
        await store.append(task_stream("abc"), [*events, result])  # one batch, no duplicates
        recorded = await store.read_stream(task_stream("abc"))
    finally:
        await store.close()
    assert [e.type for e in recorded] == ["tool.command"] * 3 + ["test.results"]
    first, refused, _, _ = recorded
    assert isinstance(first.data, ToolCommand) and isinstance(refused.data, ToolCommand)
    assert first.data.exit_code == 0 and first.data.output == "hi\n"
    assert first.data.usage is not None and first.data.usage.mechanism == "none"
    assert refused.data.denied and refused.data.rule is None

    shown = describe(first)
    assert "exit 0" in shown and "cpu" in shown and "peak" in shown
    assert "refused" in describe(refused) and "no rule allows it" in describe(refused)
    no_events = command_events(
        [], stream_id="s", correlation_id="c", causation_id=None, actor="a", created_at=at
    )
    assert no_events == []


def test_events_recorded_before_usage_still_load() -> None:
    old_test = parse_data({"type": "test.results", "commit": "c", "passed": 1, "failed": 0})
    old_deploy = parse_data({"type": "deploy.status", "ok": True, "kind": "cli"})
    assert isinstance(old_test, TestResults) and old_test.usage is None
    assert isinstance(old_deploy, DeployStatus) and old_deploy.usage is None
    denied = parse_data({"type": "tool.command", "argv": ["rm", "x"], "denied": True})
    assert isinstance(denied, ToolCommand) and denied.exit_code is None


async def test_the_terminal_is_a_pydantic_ai_tool(workspace: Path) -> None:
    terminal = Terminal(workspace, LocalSpawner())
    toolset = terminal.toolset()
    assert "run_command" in toolset.tools
    answer = await toolset.tools["run_command"].function(["cat", "notes.txt"])  # type: ignore[call-arg]
    assert answer == "$ cat notes.txt\nhello\n[exit code 0]\n"
