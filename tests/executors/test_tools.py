"""The models' read-only file tools on a real repository: answers, bounds and refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forgeline.llm.tools import WorkspaceTools
from forgeline.workspace.git import GitWorkspace
from tests.executors.helpers import MakeRepo, write

APP = "def greet(name):\n    return 'hello ' + name\n"
UTIL = "import re\n\n\ndef slug(text):\n    return re.sub(r'\\W+', '-', text)\n"


@pytest.fixture
async def ws(make_repo: MakeRepo, tmp_path: Path) -> GitWorkspace:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("def stolen(): the secret\n")
    workspace = await make_repo({"app.py": APP, "pkg/util.py": UTIL, "README.md": "# demo\n"})
    os.symlink(outside / "secret.txt", workspace.path / "leak.txt")
    os.symlink(outside, workspace.path / "leakdir")
    os.symlink("app.py", workspace.path / "alias.py")  # a link that stays inside
    await workspace.git("add", "leak.txt", "leakdir", "alias.py")
    await workspace.git("commit", "-qm", "links")
    (workspace.path / "binary.bin").write_bytes(b"\0\1\2def greet")
    return workspace


async def test_read_file_returns_the_text(ws: GitWorkspace) -> None:
    tools = WorkspaceTools(ws)
    assert await tools.read_file("app.py") == APP
    assert await tools.read_file("./pkg/util.py") == UTIL
    assert await tools.read_file("alias.py") == APP


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../outside/secret.txt", "leaves the workspace ('..')"),
        ("pkg/../../outside/secret.txt", "leaves the workspace ('..')"),
        ("leak.txt", "resolves outside the workspace (a symlink?)"),
        ("leakdir/secret.txt", "resolves outside the workspace (a symlink?)"),
        (".git/config", "inside .git/"),
        (".forgeline/forgeline.db", "inside .forgeline/"),
        ("", "empty path"),
    ],
)
async def test_read_file_refuses_paths_out_of_the_workspace(
    ws: GitWorkspace, path: str, why: str
) -> None:
    answer = await WorkspaceTools(ws).read_file(path)
    assert answer.startswith("error: refused:")
    assert why in answer
    assert "secret" not in answer.split("refused:")[1].replace(path, "")


async def test_read_file_refuses_an_absolute_path(ws: GitWorkspace, tmp_path: Path) -> None:
    for path in (str(tmp_path / "outside" / "secret.txt"), str(ws.path / "app.py")):
        answer = await WorkspaceTools(ws).read_file(path)
        assert answer.startswith("error: refused:")
        assert "is absolute" in answer
        assert "the secret" not in answer


async def test_read_file_explains_what_it_cannot_read(ws: GitWorkspace) -> None:
    tools = WorkspaceTools(ws)
    assert "does not exist" in await tools.read_file("nope.py")
    assert "is a directory" in await tools.read_file("pkg")
    assert "not a UTF-8 text file" in await tools.read_file("binary.bin")
    assert "has only 2 lines" in await tools.read_file("app.py", start_line=9)


async def test_a_long_file_comes_in_parts(ws: GitWorkspace) -> None:
    write(ws.path, "long.py", "".join(f"x{i} = {i}\n" for i in range(1, 301)))
    tools = WorkspaceTools(ws, read_chars=500)
    first = await tools.read_file("long.py")
    assert first.startswith("x1 = 1\n")
    assert "call read_file with start_line=" in first
    next_line = int(first.rsplit("start_line=", 1)[1].split()[0])
    second = await tools.read_file("long.py", start_line=next_line)
    assert second.startswith(f"x{next_line} = {next_line}\n")
    assert f"(lines {next_line}-" in second
    last = await tools.read_file("long.py", start_line=295)
    assert last.startswith("(lines 295-300 of 300)\nx295 = 295\n")
    assert len(second) < 700


async def test_list_files_shows_what_git_knows_under_a_directory(ws: GitWorkspace) -> None:
    write(ws.path, "new_module.py", "NEW = 1\n")  # new, not ignored: listed
    write(ws.path, ".forgeline/forgeline.db", "x")  # ignored: never listed
    write(ws.path, "__pycache__/app.cpython.pyc", "x")
    tools = WorkspaceTools(ws)
    listing = (await tools.list_files()).splitlines()
    assert {"app.py", "pkg/util.py", "README.md", "new_module.py", "binary.bin"} <= set(listing)
    assert not any(n.startswith((".forgeline", "__pycache__", ".git/")) for n in listing)
    assert await tools.list_files("pkg") == "pkg/util.py"
    assert await tools.list_files("pkg/") == "pkg/util.py"
    assert "not a directory" in await tools.list_files("app.py")
    assert "not a directory" in await tools.list_files("missing")
    assert "leaves the workspace" in await tools.list_files("..")
    assert "resolves outside the workspace" in await tools.list_files("leakdir")
    assert "is absolute" in await tools.list_files("/")


async def test_list_files_is_bounded(ws: GitWorkspace) -> None:
    for i in range(30):
        write(ws.path, f"many/m{i:02}.py", "")
    answer = await WorkspaceTools(ws, list_limit=10).list_files("many")
    assert len(answer.splitlines()) == 11
    assert answer.endswith("... and 20 more; list a subdirectory")


async def test_search_finds_lines_by_regex_or_literal_text(ws: GitWorkspace) -> None:
    tools = WorkspaceTools(ws)
    answer = await tools.search(r"def \w+\(")
    assert answer.splitlines() == [
        "alias.py:1: def greet(name):",  # a symlink that stays inside is a file like others
        "app.py:1: def greet(name):",
        "pkg/util.py:4: def slug(text):",
    ]
    # the symlink out of the workspace and the binary file are not searched
    assert "stolen" not in answer and "binary" not in answer
    literal = await tools.search("re.sub(r'")
    assert literal.splitlines()[-1] == "pkg/util.py:5:     return re.sub(r'\\W+', '-', text)"
    assert literal.startswith("(not a valid regular expression")
    assert await tools.search("greet", "pkg") == "no matches"
    assert "leaves the workspace" in await tools.search("secret", "..")
    assert "is absolute" in await tools.search("secret", str(ws.path.parent / "outside"))
    assert await tools.search("") == "error: the pattern is empty"


async def test_search_results_are_bounded(ws: GitWorkspace) -> None:
    write(ws.path, "big.py", "".join(f"hit_{i} = '{'x' * 500}'\n" for i in range(40)))
    answer = await WorkspaceTools(ws, match_limit=5).search("hit_")
    lines = answer.splitlines()
    assert len(lines) == 6
    assert all(len(line) < 260 for line in lines[:5])
    assert lines[0].endswith(" ...")
    assert "more matches not shown" in lines[-1]


async def test_the_toolset_offers_the_three_tools(ws: GitWorkspace) -> None:
    toolset = WorkspaceTools(ws).toolset()
    assert sorted(toolset.tools) == ["list_files", "read_file", "search"]
    schema = toolset.tools["read_file"].tool_def.parameters_json_schema
    assert "relative to the repository root" in schema["properties"]["path"]["description"]
