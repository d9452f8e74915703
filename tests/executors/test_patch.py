"""The patch engine on real git repositories: apply, validate, and roll back exactly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from forgeline.config import PackagesConfig
from forgeline.core.events import FileWrite
from forgeline.executors.patch import (
    DiffChange,
    EditChange,
    EmptyChangeError,
    PatchError,
    SearchReplace,
    apply_change,
    change_fingerprint,
    nearest_lines,
    revert_change,
)
from forgeline.executors.validation import PythonValidator
from forgeline.llm.outputs import CodeChange
from forgeline.sandbox.local import LocalSpawner
from forgeline.workspace.declared import read_declaration
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.sync import PackageSync, installed_distributions
from forgeline.workspace.venv import WorkspaceVenv, task_venv, workspace_venv
from tests.executors.helpers import MakeRepo, dirs, tree, write
from tests.workspace.wheels import make_wheel

COMPILE_ONLY = PythonValidator(None)

APP = """\
def greet(name):
    return "hello " + name


def add(a, b):
    return a + b
"""
TEST_APP = """\
from app import add, greet


def test_greet():
    assert greet("x") == "hello x"


def test_add():
    assert add(1, 2) == 3
"""


def writes(*files: tuple[str, str]) -> CodeChange:
    return CodeChange(summary="test", files=tuple(FileWrite(path=p, content=c) for p, c in files))


def edits(*blocks: tuple[str, str, str]) -> EditChange:
    return EditChange(edits=tuple(SearchReplace(path=p, search=s, replace=r) for p, s, r in blocks))


# --------------------------------------------------------------------------- applying


async def test_whole_file_writes_land_and_name_what_changed(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP})
    applied = await apply_change(
        ws,
        writes(("app.py", APP + "\nX = 1\n"), ("pkg/new.py", "Y = 2\n"), ("README", "r\n")),
        validate=COMPILE_ONLY,
    )
    assert applied.paths == ("README", "app.py", "pkg/new.py")
    assert applied.created == ("README", "pkg/new.py")
    assert applied.deleted == ()
    assert (ws.path / "pkg/new.py").read_text() == "Y = 2\n"
    # the caller commits
    assert await ws.commit("apply", list(applied.paths)) is not None
    assert await ws.dirty_files() == []


async def test_search_replace_blocks_apply_in_order_across_files(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP, "notes.md": "one\ntwo\n"})
    applied = await apply_change(
        ws,
        edits(
            ("app.py", 'return "hello " + name', 'return "hi " + name'),
            ("app.py", 'return "hi " + name', 'return f"hi {name}"'),  # sees block 1's result
            ("notes.md", "two\n", "two\nthree\n"),
            ("docs/new.md", "", "created\n"),  # empty search: a new file
        ),
        validate=COMPILE_ONLY,
    )
    assert applied.paths == ("app.py", "docs/new.md", "notes.md")
    assert 'return f"hi {name}"' in (ws.path / "app.py").read_text()
    assert (ws.path / "notes.md").read_text() == "one\ntwo\nthree\n"
    assert (ws.path / "docs/new.md").read_text() == "created\n"


async def test_a_unified_diff_modifies_creates_and_deletes(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP, "old.txt": "bye\n"})
    diff = (
        "diff --git a/app.py b/app.py\n"
        "--- a/app.py\n"
        "+++ b/app.py\n"
        "@@ -1,3 +1,3 @@\n"
        " def greet(name):\n"
        '-    return "hello " + name\n'
        '+    return "hey " + name\n'
        " \n"
        "diff --git a/new.txt b/new.txt\n"
        "new file mode 100644\n"
        "--- /dev/null\n"
        "+++ b/new.txt\n"
        "@@ -0,0 +1 @@\n"
        "+fresh\n"
        "diff --git a/old.txt b/old.txt\n"
        "deleted file mode 100644\n"
        "--- a/old.txt\n"
        "+++ /dev/null\n"
        "@@ -1 +0,0 @@\n"
        "-bye\n"
    )
    applied = await apply_change(ws, DiffChange(diff=diff), validate=COMPILE_ONLY)
    assert applied.paths == ("app.py", "new.txt", "old.txt")
    assert applied.created == ("new.txt",)
    assert applied.deleted == ("old.txt",)
    assert '"hey "' in (ws.path / "app.py").read_text()
    assert not (ws.path / "old.txt").exists()


# --------------------------------------------------------------------------- refusals


async def test_the_second_of_three_blocks_not_matching_touches_nothing(
    make_repo: MakeRepo,
) -> None:
    ws = await make_repo({"app.py": APP, "b.py": "B = 1\n"})
    before = await tree(ws)
    change = edits(
        ("b.py", "B = 1", "B = 2"),
        ("app.py", "def add(a, c):\n    return a + b", "def add(a, b):\n    return b + a"),
        ("app.py", "def greet", "def hello"),
    )
    with pytest.raises(PatchError) as info:
        await apply_change(ws, change, validate=COMPILE_ONLY)
    message = str(info.value)
    assert "block 2 of 3 (app.py)" in message
    assert "does not occur" in message
    # the nearest lines, numbered, so the proposer can quote them exactly
    assert "    5 | def add(a, b):" in message
    assert "    6 |     return a + b" in message
    assert await tree(ws) == before


async def test_a_search_text_matching_twice_is_refused(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP})
    with pytest.raises(PatchError, match=r"occurs 2 times \(lines 2, 6\)"):
        await apply_change(
            ws, edits(("app.py", "    return ", "    return (")), validate=COMPILE_ONLY
        )


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../escape.py", "leaves the workspace"),
        ("/etc/passwd", "is absolute"),
        (".git/config", "not writable"),
        (".forgeline/forgeline.db", "not writable"),
    ],
)
async def test_every_path_is_checked_before_anything_is_written(
    make_repo: MakeRepo, path: str, reason: str
) -> None:
    ws = await make_repo({"app.py": APP})
    before = await tree(ws)
    with pytest.raises(PatchError, match=reason):
        await apply_change(ws, writes(("ok.py", "x = 1\n"), (path, "x\n")), validate=COMPILE_ONLY)
    assert await tree(ws) == before
    assert not (ws.path.parent / "escape.py").exists()


async def test_a_symlink_is_not_written_through(make_repo: MakeRepo, tmp_path: Path) -> None:
    ws = await make_repo({"app.py": APP})
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    os.symlink(outside, ws.path / "link.txt")
    os.symlink(ws.path / "app.py", ws.path / "inner.py")
    with pytest.raises(PatchError, match="resolves outside"):
        await apply_change(ws, writes(("link.txt", "x\n")), validate=COMPILE_ONLY)
    with pytest.raises(PatchError, match="is a symlink"):
        await apply_change(ws, writes(("inner.py", "x = 1\n")), validate=COMPILE_ONLY)
    assert outside.read_text() == "keep\n"


async def test_a_diff_that_does_not_apply_is_refused_untouched(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP})
    before = await tree(ws)
    diff = (
        "--- a/app.py\n+++ b/app.py\n@@ -1,3 +1,3 @@\n def greet(name):\n"
        '-    return "bonjour " + name\n+    return "hey " + name\n \n'
    )
    with pytest.raises(PatchError, match="does not apply"):
        await apply_change(ws, DiffChange(diff=diff), validate=COMPILE_ONLY)
    with pytest.raises(PatchError, match=r"cannot be read|names no files|does not apply"):
        await apply_change(ws, DiffChange(diff="this is not a diff\n"), validate=COMPILE_ONLY)
    assert await tree(ws) == before


async def test_a_change_that_changes_nothing_is_an_empty_change(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP})
    with pytest.raises(EmptyChangeError):
        await apply_change(ws, writes(("app.py", APP)), validate=COMPILE_ONLY)
    with pytest.raises(EmptyChangeError):
        await apply_change(ws, EditChange(edits=()), validate=COMPILE_ONLY)
    with pytest.raises(EmptyChangeError):
        await apply_change(ws, DiffChange(diff="  \n"), validate=COMPILE_ONLY)


# --------------------------------------------------------------------------- rollback


async def test_the_third_file_failing_to_compile_rolls_back_the_first_two(
    make_repo: MakeRepo,
) -> None:
    ws = await make_repo({"app.py": APP})
    before, before_dirs = await tree(ws), dirs(ws)
    change = writes(
        ("app.py", APP + "\nZ = 3\n"),
        ("pkg/sub/new.py", "Y = 2\n"),
        ("pkg/broken.py", "def broken(:\n"),
    )
    # the message quotes the line: a model answering again sees nothing else of it
    quoted = r"pkg/broken.py does not compile \(line 1\).* in `def broken\(:`"
    with pytest.raises(PatchError, match=quoted):
        await apply_change(ws, change, validate=COMPILE_ONLY)
    assert await tree(ws) == before
    assert dirs(ws) == before_dirs  # the directories it created are gone too


async def test_rollback_keeps_uncommitted_work_untracked_files_and_forgeline(
    make_repo: MakeRepo,
) -> None:
    ws = await make_repo({"app.py": APP, "lib.py": "L = 1\n"})
    # State that is not the change's: an uncommitted edit, an untracked file, the store.
    write(ws.path, "app.py", APP + "\n# work in progress\n")
    write(ws.path, "notes.txt", "my notes\n")
    write(ws.path, ".forgeline/forgeline.db", "events\n")
    os.chmod(ws.path / "lib.py", 0o755)
    before = await tree(ws)
    assert before[0] == {"app.py": " M", "lib.py": " M", "notes.txt": "??"}
    change = writes(
        ("app.py", "def greet(name):\n    return name\n"),  # touches the dirty file
        ("lib.py", "L = 2\n"),
        ("new.py", "def (\n"),
    )
    with pytest.raises(PatchError, match=r"new\.py does not compile"):
        await apply_change(ws, change, validate=COMPILE_ONLY)
    assert await tree(ws) == before  # the uncommitted edit is back byte for byte, not HEAD's
    assert (ws.path / "lib.py").stat().st_mode & 0o777 == 0o755


async def test_a_diff_that_breaks_compilation_is_rolled_back(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP, "old.py": "OLD = 1\n"})
    before = await tree(ws)
    diff = (
        "diff --git a/old.py b/old.py\ndeleted file mode 100644\n--- a/old.py\n+++ /dev/null\n"
        "@@ -1 +0,0 @@\n-OLD = 1\n"
        "diff --git a/d/new.py b/d/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/d/new.py\n"
        "@@ -0,0 +1 @@\n+def broken(:\n"
    )
    with pytest.raises(PatchError, match=r"d/new\.py does not compile"):
        await apply_change(ws, DiffChange(diff=diff), validate=COMPILE_ONLY)
    assert await tree(ws) == before
    assert not (ws.path / "d").exists()


async def test_breaking_test_collection_is_rejected_and_rolled_back(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws = await make_repo({"app.py": APP, "tests/test_app.py": TEST_APP})
    before = await tree(ws)
    renamed = APP.replace("def add(", "def plus(")  # compiles, but the test imports `add`
    with pytest.raises(PatchError, match="no longer collect") as info:
        await apply_change(ws, writes(("app.py", renamed)), validate=PythonValidator(spawner))
    assert "tests/test_app.py" in str(info.value)
    assert await tree(ws) == before


async def test_collection_uses_the_workspace_venv_where_the_project_installs_packages(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws = await make_repo({"app.py": APP, "tests/test_app.py": TEST_APP})
    venv = await workspace_venv(ws.path)
    (venv.site_packages / "only_in_the_venv.py").write_text("VALUE = 1\n")
    test = "from only_in_the_venv import VALUE\n\n\ndef test_value():\n    assert VALUE == 1\n"
    change = writes(("tests/test_venv_package.py", test))
    with pytest.raises(PatchError, match="no longer collect"):  # forgeline's interpreter
        await apply_change(ws, change, validate=PythonValidator(spawner))
    applied = await apply_change(ws, change, validate=PythonValidator(spawner, venv=venv))
    assert applied.paths == ("tests/test_venv_package.py",)


async def test_declared_packages_are_installed_before_collection_or_the_change_rolls_back(
    make_repo: MakeRepo, spawner: LocalSpawner, tmp_path: Path
) -> None:
    links = tmp_path / "links"
    make_wheel(links, "tinylib", "1.0", "VALUE = 1\n")
    ws = await make_repo({"app.py": APP, "tests/test_app.py": TEST_APP})
    venv = await task_venv(ws.path, "t1")
    config = PackagesConfig(extra_allow=("tiny*",), use_index=False, find_links=(str(links),))
    installer = PackageSync(config, spawner)

    async def sync() -> WorkspaceVenv:
        await installer.sync(venv, read_declaration(ws.path), cwd=ws.path)
        return venv

    validator = PythonValidator(spawner, sync=sync)
    test = "from tinylib import VALUE\n\n\ndef test_value():\n    assert VALUE == 1\n"
    with pytest.raises(PatchError, match="No matching distribution found for tinynothing"):
        await apply_change(
            ws,
            writes(("requirements.txt", "tinynothing\n"), ("tests/t.py", test)),
            validate=validator,
        )
    with pytest.raises(PatchError, match=r"'reqeusts' is refused \(typosquat\)"):
        await apply_change(ws, writes(("requirements.txt", "reqeusts\n")), validate=validator)
    assert await ws.status() == {} and not (ws.path / "requirements.txt").exists()
    change = writes(("requirements.txt", "tinylib\n"), ("tests/test_lib.py", test))
    applied = await apply_change(ws, change, validate=validator)
    assert applied.paths == ("requirements.txt", "tests/test_lib.py")
    assert installed_distributions(venv.site_packages)["tinylib"] == "1.0"


async def test_collection_errors_that_were_there_before_do_not_count(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws = await make_repo(
        {"app.py": APP, "tests/test_app.py": TEST_APP, "tests/test_old.py": "import missing\n"}
    )
    applied = await apply_change(
        ws, writes(("app.py", APP + "\nX = 1\n")), validate=PythonValidator(spawner)
    )
    assert applied.paths == ("app.py",)


async def test_files_a_test_module_writes_during_collection_are_cleaned_up(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws = await make_repo({"app.py": APP, "data.txt": "original\n"})
    before = await tree(ws)
    # The new test module scribbles on the tree at import time, then fails to import.
    noisy = (
        "from pathlib import Path\n"
        "Path('data.txt').write_text('scribbled')\n"
        "Path('stray/out.txt').parent.mkdir(exist_ok=True)\n"
        "Path('stray/out.txt').write_text('x')\n"
        "import does_not_exist\n"
    )
    with pytest.raises(PatchError, match="no longer collect"):
        await apply_change(
            ws, writes(("tests/test_noisy.py", noisy)), validate=PythonValidator(spawner)
        )
    assert await tree(ws) == before


async def test_a_successful_change_keeps_nothing_its_validation_wrote(
    make_repo: MakeRepo, spawner: LocalSpawner
) -> None:
    ws = await make_repo({"app.py": APP, "data.txt": "original\n"})
    noisy = (
        "from pathlib import Path\n"
        "Path('data.txt').write_text('scribbled')\n"
        "Path('scribble.txt').write_text('x')\n\n\n"
        "def test_ok():\n    pass\n"
    )
    applied = await apply_change(
        ws, writes(("tests/test_noisy.py", noisy)), validate=PythonValidator(spawner)
    )
    assert applied.paths == ("tests/test_noisy.py",)
    assert (ws.path / "data.txt").read_text() == "original\n"
    assert not (ws.path / "scribble.txt").exists()
    assert await ws.dirty_files() == ["tests/test_noisy.py"]


async def test_a_write_failing_half_way_leaves_nothing_half_applied(
    make_repo: MakeRepo,
) -> None:
    ws = await make_repo({"app.py": APP})
    before = await tree(ws)
    # The first file is written, then the second cannot be: app.py is a file, not a folder.
    change = writes(("first.py", "X = 1\n"), ("app.py/inner.py", "Y = 2\n"))
    with pytest.raises(PatchError, match="writing the change failed"):
        await apply_change(ws, change, validate=COMPILE_ONLY)
    assert await tree(ws) == before


class HangingValidator:
    """Validation that never ends, to cancel the apply half-way."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def before(self, workspace: GitWorkspace, paths: Sequence[str]) -> frozenset[str]:
        return frozenset()

    async def after(
        self, workspace: GitWorkspace, paths: Sequence[str], before: frozenset[str]
    ) -> list[str]:
        self.started.set()
        await asyncio.sleep(3600)
        return []


async def test_a_cancelled_apply_rolls_back_and_stays_cancelled(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP})
    before = await tree(ws)
    validator = HangingValidator()
    change = writes(("app.py", APP + "\nX = 1\n"), ("new/mod.py", "Y = 2\n"))
    task = asyncio.create_task(apply_change(ws, change, validate=validator))
    await validator.started.wait()
    assert (ws.path / "new/mod.py").exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await tree(ws) == before


async def test_revert_change_undoes_an_applied_change(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": APP, "gone.txt": "g\n"})
    before = await tree(ws)
    diff = (
        "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n"
        "+++ /dev/null\n@@ -1 +0,0 @@\n-g\n"
    )
    first = await apply_change(ws, DiffChange(diff=diff), validate=COMPILE_ONLY)
    await revert_change(ws, first)
    assert await tree(ws) == before
    second = await apply_change(ws, writes(("a/b/c.py", "C = 1\n")), validate=COMPILE_ONLY)
    await revert_change(ws, second)
    assert await tree(ws) == before
    assert not (ws.path / "a").exists()


# --------------------------------------------------------------------------- helpers


def test_fingerprints_ignore_the_summary_and_tell_shapes_apart() -> None:
    a = CodeChange(summary="one", files=(FileWrite(path="x.py", content="x"),))
    b = CodeChange(summary="two", files=(FileWrite(path="x.py", content="x"),))
    c = CodeChange(summary="one", files=(FileWrite(path="x.py", content="y"),))
    assert change_fingerprint(a) == change_fingerprint(b) != change_fingerprint(c)
    assert change_fingerprint(DiffChange(diff="d")) != change_fingerprint(EditChange(edits=()))


def test_nearest_lines_point_at_the_most_similar_window() -> None:
    text = "\n".join(f"line {i}" for i in range(1, 30)) + "\nvalue = compute(x, y)\nend\n"
    shown = nearest_lines(text, "value = compute(x, z)\n")
    assert "   30 | value = compute(x, y)" in shown
    assert "   28 | line 28" in shown
    assert nearest_lines("", "x") == "    (the file is empty)"
