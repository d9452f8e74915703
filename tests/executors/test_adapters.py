"""CLI adapters against executable stand-ins that parse the real CLIs' arguments.

Each stand-in is a Python script with a ``#!`` line, written into a temporary bin directory
that the adapter finds through the ``PATH`` it is given. It checks its arguments the way
the real CLI would (argparse, same flags), reports which API keys it can see, edits files
in its working directory and exits with the CLI's codes.
"""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from forgeline.executors.adapters import (
    AdapterError,
    AdapterRequest,
    AiderAdapter,
    ClaudeAdapter,
    CliAdapter,
    CodexAdapter,
    ToolAdapter,
    default_adapters,
)
from forgeline.executors.patch import apply_change
from forgeline.executors.validation import PythonValidator
from forgeline.sandbox.local import LocalSpawner
from tests.executors.helpers import MakeRepo, tree, write

STANDIN = """\
#!{python}
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

KIND = {kind!r}
BEHAVIOUR = {behaviour!r}

parser = argparse.ArgumentParser(prog=KIND)
if KIND == "aider":
    for flag in ("--yes-always", "--no-auto-commits", "--no-gitignore", "--no-check-update",
                 "--no-pretty", "--no-stream"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--message", required=True)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    assert args.yes_always and args.no_auto_commits, "aider would ask questions"
    prompt = args.message
elif KIND == "codex":
    parser.add_argument("command", choices=["exec"])
    parser.add_argument("--sandbox", choices=["read-only", "workspace-write",
                                              "danger-full-access"], default="read-only")
    parser.add_argument("--color", choices=["always", "never", "auto"])
    parser.add_argument("--model", "-m")
    parser.add_argument("prompt")
    args = parser.parse_args()
    if args.sandbox == "read-only":
        print("codex: read-only sandbox, cannot edit", file=sys.stderr)
        sys.exit(1)
    prompt = args.prompt
else:
    parser.add_argument("-p", "--print", action="store_true")
    parser.add_argument("--permission-mode", choices=["default", "acceptEdits", "plan",
                                                      "bypassPermissions"])
    parser.add_argument("--output-format", choices=["text", "json", "stream-json"])
    parser.add_argument("--model")
    parser.add_argument("prompt")
    args = parser.parse_args()
    if not args.print or args.permission_mode != "acceptEdits":
        print("claude: would wait for a person", file=sys.stderr)
        sys.exit(1)
    prompt = args.prompt

keys = sorted(k for k in os.environ if k.endswith(("_API_KEY", "_TOKEN")))
print(f"{{KIND}} keys: {{','.join(keys) or 'none'}}")
print(f"{{KIND}} secret leaked: {{'FORGELINE_TEST_SECRET' in os.environ}}")
print(f"{{KIND}} prompt: {{prompt}}")

if BEHAVIOUR == "edit":
    app = Path("app.py")
    app.write_text(app.read_text() + "\\n\\ndef shout(x):\\n    return x.upper()\\n")
    Path("pkg").mkdir(exist_ok=True)
    Path("pkg/added.py").write_text("ADDED = True\\n")
    if KIND == "aider":  # its own history, which is no part of the change
        Path(".aider.chat.history.md").write_text("# aider chat started")
    print("edited app.py, created pkg/added.py")
elif BEHAVIOUR == "commit":
    Path("app.py").write_text("X = 1\\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam",
                    "tool commit"], check=True)
    print("committed")
elif BEHAVIOUR == "fail":
    Path("app.py").write_text("half written")
    print("error: the model refused", file=sys.stderr)
    sys.exit(1)
elif BEHAVIOUR == "sleep":
    Path("app.py").write_text("half written")
    time.sleep(30)
else:
    print("nothing to do")
"""

APP = "def greet(name):\n    return 'hello ' + name\n"


def make_standin(bin_dir: Path, name: str, kind: str, behaviour: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(STANDIN.format(python=sys.executable, kind=kind, behaviour=behaviour))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def environ(bin_dir: Path, **keys: str) -> dict[str, str]:
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **keys}


ADAPTERS: list[tuple[type[CliAdapter], str]] = [
    (AiderAdapter, "OPENAI_API_KEY"),
    (CodexAdapter, "OPENAI_API_KEY"),
    (ClaudeAdapter, "ANTHROPIC_API_KEY"),
]


@pytest.fixture(autouse=True)
def a_secret_in_our_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGELINE_TEST_SECRET", "do-not-pass")


@pytest.mark.parametrize(("cls", "key"), ADAPTERS)
async def test_a_cli_edit_comes_back_as_a_change_and_the_tree_is_reset(
    make_repo: MakeRepo, spawner: LocalSpawner, tmp_path: Path, cls: type[CliAdapter], key: str
) -> None:
    ws = await make_repo({"app.py": APP})
    bin_dir = tmp_path / "bin"
    make_standin(bin_dir, cls.default_executable, cls.name, "edit")
    adapter = cls(environ=environ(bin_dir, **{key: "sk-test"}, UNRELATED_TOKEN="nope"))
    assert isinstance(adapter, ToolAdapter)
    assert adapter.validate_config() == []
    before = await tree(ws)

    request = AdapterRequest(prompt="-add a shout function", files=("app.py",))
    result = await adapter.execute(request, ws, spawner)

    assert result.ok, result.error
    assert result.exit_code == 0
    assert result.files == ("app.py", "pkg/added.py")
    assert f"{cls.name} keys: {key}\n" in result.output  # only the key it needs, explicitly
    assert f"{cls.name} secret leaked: False" in result.output
    assert f"{cls.name} prompt: -add a shout function" in result.output
    assert await tree(ws) == before  # the tool's edits live only in the change now
    change = result.require_change()
    applied = await apply_change(ws, change, validate=PythonValidator(None))
    assert applied.paths == ("app.py", "pkg/added.py")
    assert "def shout(x):" in (ws.path / "app.py").read_text()
    assert (ws.path / "pkg/added.py").read_text() == "ADDED = True\n"


async def test_a_failing_cli_is_a_clear_failure_and_leaves_no_edit(
    make_repo: MakeRepo, spawner: LocalSpawner, tmp_path: Path
) -> None:
    ws = await make_repo({"app.py": APP})
    bin_dir = tmp_path / "bin"
    make_standin(bin_dir, "aider", "aider", "fail")
    adapter = AiderAdapter(environ=environ(bin_dir, OPENAI_API_KEY="sk-test"))
    before = await tree(ws)
    result = await adapter.execute(AdapterRequest(prompt="do it"), ws, spawner)
    assert not result.ok
    assert result.exit_code == 1
    assert result.change is None
    assert result.error is not None
    assert "aider exited with code 1 (error)" in result.error
    assert "the model refused" in result.error
    assert await tree(ws) == before
    with pytest.raises(AdapterError, match="exited with code 1"):
        result.require_change()


async def test_a_cli_that_changes_nothing_is_a_failure(
    make_repo: MakeRepo, spawner: LocalSpawner, tmp_path: Path
) -> None:
    ws = await make_repo({"app.py": APP})
    bin_dir = tmp_path / "bin"
    make_standin(bin_dir, "claude", "claude", "nothing")
    adapter = ClaudeAdapter(environ=environ(bin_dir, ANTHROPIC_API_KEY="k"))
    result = await adapter.execute(AdapterRequest(prompt="do it"), ws, spawner)
    assert not result.ok
    assert result.exit_code == 0
    assert result.error == "claude finished but changed no file"
    assert "nothing to do" in result.output


async def test_a_cli_that_commits_anyway_is_undone_and_its_commit_captured(
    make_repo: MakeRepo, spawner: LocalSpawner, tmp_path: Path
) -> None:
    ws = await make_repo({"app.py": APP})
    head = await ws.head()
    bin_dir = tmp_path / "bin"
    make_standin(bin_dir, "codex", "codex", "commit")
    adapter = CodexAdapter(environ=environ(bin_dir, OPENAI_API_KEY="k"))
    result = await adapter.execute(AdapterRequest(prompt="do it"), ws, spawner)
    assert result.ok, result.error
    assert result.files == ("app.py",)
    assert await ws.head() == head
    await apply_change(ws, result.require_change(), validate=PythonValidator(None))
    assert (ws.path / "app.py").read_text() == "X = 1\n"


async def test_a_cli_past_its_timeout_is_stopped_and_its_edits_undone(
    make_repo: MakeRepo, spawner: LocalSpawner, tmp_path: Path
) -> None:
    ws = await make_repo({"app.py": APP})
    bin_dir = tmp_path / "bin"
    make_standin(bin_dir, "aider", "aider", "sleep")
    adapter = AiderAdapter(environ=environ(bin_dir, OPENAI_API_KEY="k"))
    before = await tree(ws)
    result = await adapter.execute(AdapterRequest(prompt="x", timeout=1.0), ws, spawner)
    assert result.timed_out
    assert not result.ok
    assert result.error is not None
    assert "timed out" in result.error
    assert await tree(ws) == before


async def test_a_dirty_workspace_or_a_bad_file_is_refused(
    make_repo: MakeRepo, spawner: LocalSpawner, tmp_path: Path
) -> None:
    ws = await make_repo({"app.py": APP})
    bin_dir = tmp_path / "bin"
    make_standin(bin_dir, "aider", "aider", "edit")
    adapter = AiderAdapter(environ=environ(bin_dir, OPENAI_API_KEY="k"))
    with pytest.raises(AdapterError, match="leaves the workspace"):
        await adapter.execute(AdapterRequest(prompt="x", files=("../x.py",)), ws, spawner)
    write(ws.path, "app.py", "changed = 1\n")
    with pytest.raises(AdapterError, match=r"uncommitted changes \(app.py\)"):
        await adapter.execute(AdapterRequest(prompt="x"), ws, spawner)


async def test_validate_config_reports_a_missing_executable_or_key(tmp_path: Path) -> None:
    empty_bin = tmp_path / "empty"
    empty_bin.mkdir()
    adapter = CodexAdapter(environ={"PATH": str(empty_bin)})
    problems = adapter.validate_config()
    assert len(problems) == 2
    assert "executable 'codex' not found on PATH" in problems[0]
    assert "OPENAI_API_KEY or CODEX_API_KEY" in problems[1]
    assert CodexAdapter(environ={"PATH": str(empty_bin)}, requires_key=False).validate_config()
    with pytest.raises(AdapterError, match="not found"):
        await adapter.execute(AdapterRequest(prompt="x"), None, None)  # type: ignore[arg-type]

    standin = make_standin(tmp_path / "elsewhere", "my-claude", "claude", "edit")
    claude = ClaudeAdapter(executable=str(standin), environ={"CLAUDE_CODE_OAUTH_TOKEN": "t"})
    assert claude.validate_config() == []
    caps = claude.get_capabilities()
    assert caps["tool"] == "claude"
    assert caps["executable"] == str(standin)
    assert caps["keys_present"] == ["CLAUDE_CODE_OAUTH_TOKEN"]
    assert caps["ready"] is True


def test_each_cli_gets_its_own_non_interactive_arguments() -> None:
    request = AdapterRequest(prompt="-fix it", files=("a.py", "-b.py"))
    aider = AiderAdapter(model="sonnet").arguments(request)
    assert aider[:2] == ["--yes-always", "--no-auto-commits"]
    assert "--model=sonnet" in aider
    assert aider[-4:] == ["--message=-fix it", "--", "a.py", "-b.py"]
    codex = CodexAdapter().arguments(request)
    assert codex[:3] == ["exec", "--sandbox", "workspace-write"]
    assert codex[-2] == "--"
    assert codex[-1].startswith("-fix it\n\nFocus on these files: a.py, -b.py")
    claude = ClaudeAdapter(extra_args=["--max-turns", "5"]).arguments(AdapterRequest(prompt="p"))
    assert claude == [
        "-p",
        "--permission-mode",
        "acceptEdits",
        "--output-format",
        "text",
        "--max-turns",
        "5",
        "--",
        "p",
    ]
    assert set(default_adapters()) == {"aider", "codex", "claude"}


def test_the_stand_in_template_is_valid_python() -> None:
    source = STANDIN.format(python=sys.executable, kind="aider", behaviour="edit")
    compile(textwrap.dedent(source), "standin", "exec")
