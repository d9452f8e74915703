"""Paths and sizes a model may write (issue 13, finding 5), in every edit format.

A ``.git`` (or ``.forgeline``) component anywhere in a path, in any case, is refused before
anything is written: ``sub/.git/hooks/post-commit`` was written silently, ``.GIT/...``
failed at ``git add`` and left untracked files. A file over the size limit is refused too
(a 50 MB answer was committed). Either way the tree is exactly as before.
"""

from __future__ import annotations

import pytest

from forgeline.core.events import FileWrite
from forgeline.executors.patch import (
    MAX_FILE_BYTES,
    Change,
    DiffChange,
    EditChange,
    PatchError,
    SearchReplace,
    apply_change,
)
from forgeline.executors.validation import PythonValidator
from forgeline.llm.outputs import CodeChange, parse_files
from tests.executors.helpers import MakeRepo, dirs, tree

COMPILE_ONLY = PythonValidator(None)
HOOK = "#!/bin/sh\ntouch pwned\n"

PROTECTED = [
    "sub/.git/hooks/post-commit",
    ".GIT/config",
    ".Git/hooks/pre-commit",
    "a/b/.git/info/exclude",
    ".git./config",
    "GIT~1/config",
    "pkg/.forgeline/forgeline.db",
    ".FORGELINE/venv/bin/python",
]


def whole(path: str, content: str = HOOK) -> Change:
    return CodeChange(
        summary="s",
        files=(FileWrite(path="ok.py", content="x = 1\n"), FileWrite(path=path, content=content)),
    )


def markdown(path: str, content: str = HOOK) -> Change:
    return parse_files(f"ok.py\n```python\nx = 1\n```\n{path}\n```\n{content}```\n")


def search_replace(path: str, content: str = HOOK) -> Change:
    return EditChange(
        edits=(
            SearchReplace(path="ok.py", search="", replace="x = 1\n"),
            SearchReplace(path=path, search="", replace=content),
        )
    )


def diff(path: str, content: str = HOOK) -> Change:
    lines = content.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return DiffChange(diff=_new_file("ok.py", "+x = 1\n", 1) + _new_file(path, body, len(lines)))


def _new_file(path: str, body: str, count: int) -> str:
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n"
        f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{count} @@\n{body}"
    )


FORMATS = [whole, markdown, search_replace, diff]


def _names(change: Change) -> set[str]:
    return {f.path for f in change.files} if isinstance(change, CodeChange) else set()


# A Markdown answer takes no name starting with a dot (or with a ``~``) as a path (tested
# below), so that format is tried with the names it does take.
CASES = [
    pytest.param(make, path, id=f"{make.__name__}-{path}")
    for make in FORMATS
    for path in PROTECTED
    if make is not markdown or path in _names(markdown(path))
]


@pytest.mark.parametrize(("make", "path"), CASES)
async def test_a_git_or_forgeline_component_is_refused_leaving_nothing(
    make_repo: MakeRepo, make, path: str
) -> None:
    ws = await make_repo({"app.py": "A = 1\n"})
    before, before_dirs = await tree(ws), dirs(ws)
    change = make(path)
    with pytest.raises(PatchError, match="which is not writable"):
        await apply_change(ws, change, validate=COMPILE_ONLY)
    assert await tree(ws) == before
    assert dirs(ws) == before_dirs
    assert not (ws.path / path).exists()
    assert not (ws.path / "ok.py").exists(), "nothing of the change was written"
    # git's own files are as they were: no hook was planted in the real .git either
    assert not (ws.path / ".git" / "hooks" / "post-commit").exists()


@pytest.mark.parametrize("path", [p for p in PROTECTED if p.startswith(".") or "~" in p])
def test_a_markdown_answer_never_names_a_dotted_top_level_path(path: str) -> None:
    assert path not in _names(markdown(path))


async def test_names_that_only_look_like_git_are_written(make_repo: MakeRepo) -> None:
    ws = await make_repo({"app.py": "A = 1\n"})
    change = CodeChange(
        summary="s",
        files=tuple(
            FileWrite(path=p, content="x\n")
            for p in (".gitignore", ".github/workflows/ci.yml", "docs/git.md", "my.git/notes")
        ),
    )
    applied = await apply_change(ws, change, validate=COMPILE_ONLY)
    assert set(applied.created) == {
        ".gitignore",
        ".github/workflows/ci.yml",
        "docs/git.md",
        "my.git/notes",
    }


def test_the_default_size_limit_is_one_mebibyte() -> None:
    assert MAX_FILE_BYTES == 1024 * 1024


@pytest.mark.parametrize("make", FORMATS, ids=lambda f: f.__name__)
async def test_a_file_over_the_size_limit_is_refused_leaving_nothing(
    make_repo: MakeRepo, make
) -> None:
    ws = await make_repo({"app.py": "A = 1\n"})
    before, before_dirs = await tree(ws), dirs(ws)
    big = "".join(f"LINE_{n} = {n}\n" for n in range(40))  # about 500 bytes
    with pytest.raises(PatchError, match=r"over the 300-byte limit .*\[coder\] max_file_bytes"):
        await apply_change(ws, make("big.py", big), validate=COMPILE_ONLY, max_file_bytes=300)
    assert await tree(ws) == before
    assert dirs(ws) == before_dirs
    # the same change within the limit lands
    applied = await apply_change(ws, make("big.py", big), validate=COMPILE_ONLY)
    assert "big.py" in applied.paths


async def test_an_edit_that_grows_a_file_over_the_limit_is_rolled_back(
    make_repo: MakeRepo,
) -> None:
    ws = await make_repo({"app.py": "A = 1\n"})
    before = await tree(ws)
    grow = "A = 1\n" + "B = 2\n" * 100
    edit = EditChange(edits=(SearchReplace(path="app.py", search="A = 1\n", replace=grow),))
    patch = DiffChange(
        diff="--- a/app.py\n+++ b/app.py\n@@ -1 +1,101 @@\n A = 1\n" + "+B = 2\n" * 100
    )
    for change in (edit, patch):
        with pytest.raises(PatchError, match=r"app\.py would be 606 bytes"):
            await apply_change(ws, change, validate=COMPILE_ONLY, max_file_bytes=200)
        assert await tree(ws) == before
