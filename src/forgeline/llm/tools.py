"""Read-only file tools for the coder's and the fixer's models, confined to the workspace.

``WorkspaceTools(workspace).toolset()`` is a pydantic-ai toolset with three tools:

- ``read_file(path, start_line=1)``: a text file's lines from ``start_line``, up to
  ``read_chars`` characters (the answer says where to go on);
- ``list_files(directory=".")``: the files under a directory, at most ``list_limit``;
- ``search(pattern, directory=".")``: lines matching a regular expression (or, when the
  pattern is not a valid one, the literal text), at most ``match_limit``.

The files are those git knows: tracked, plus new files that are not ignored (so never
``.forgeline/`` or caches). Every path goes through ``confined_path``: a ``..``, an
absolute path, a path into ``.git/`` or ``.forgeline/`` and a symlink leading out of the
workspace are refused. A refusal or any other problem is the tool's *answer*
(``error: ...``), not an exception, so the model reads why and carries on without using
up its retries.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from pydantic_ai.toolsets import FunctionToolset

from forgeline.errors import WorkspaceError
from forgeline.workspace.git import GitWorkspace, confined_path

__all__ = ["WorkspaceTools"]

#: Characters of a line shown in a search result, and searched in (long lines are cut).
LINE_CHARS = 200
SEARCH_LINE_CHARS = 2_000
#: Files larger than this are not searched.
SEARCH_FILE_BYTES = 1_000_000


class WorkspaceTools:
    def __init__(
        self,
        workspace: GitWorkspace,
        *,
        read_chars: int = 20_000,
        list_limit: int = 300,
        match_limit: int = 50,
    ) -> None:
        self.workspace = workspace
        self.root = workspace.path
        self.read_chars = read_chars
        self.list_limit = list_limit
        self.match_limit = match_limit

    # ------------------------------------------------------------------ the tools

    async def read_file(self, path: str, start_line: int = 1) -> str:
        target = self._resolve(path)
        if isinstance(target, str):
            return target
        if not target.exists():
            return f"error: {path!r} does not exist; list_files shows the files there are"
        if target.is_dir():
            return f"error: {path!r} is a directory; use list_files"
        text = _text(target)
        if text is None:
            return f"error: {path!r} is not a UTF-8 text file"
        lines = text.splitlines(keepends=True)
        if not lines:
            return "(the file is empty)"
        start = max(1, start_line)
        if start > len(lines):
            return f"error: {path!r} has only {len(lines)} lines"
        out: list[str] = []
        used = 0
        end = start - 1
        for line in lines[start - 1 :]:
            if out and used + len(line) > self.read_chars:
                break
            out.append(line[: self.read_chars])
            used += len(line)
            end += 1
        body = "".join(out)
        if end < len(lines):
            body += (
                f"\n... (lines {start}-{end} of {len(lines)}; call read_file with "
                f"start_line={end + 1} for more)\n"
            )
        elif start > 1:
            body = f"(lines {start}-{end} of {len(lines)})\n" + body
        return body

    async def list_files(self, directory: str = ".") -> str:
        prefix = self._directory(directory)
        if prefix is None:
            return f"error: {directory!r} is not a directory in the workspace"
        if prefix.startswith("error:"):
            return prefix
        names = [n for n in await self.files() if n.startswith(prefix)]
        if not names:
            return "(no files)"
        shown = names[: self.list_limit]
        more = len(names) - len(shown)
        tail = f"\n... and {more} more; list a subdirectory" if more else ""
        return "\n".join(shown) + tail

    async def search(self, pattern: str, directory: str = ".") -> str:
        if not pattern:
            return "error: the pattern is empty"
        prefix = self._directory(directory)
        if prefix is None:
            return f"error: {directory!r} is not a directory in the workspace"
        if prefix.startswith("error:"):
            return prefix
        note = ""
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            regex = re.compile(re.escape(pattern))
            note = f"(not a valid regular expression ({exc}); searched for the literal text)\n"
        names = [n for n in await self.files() if n.startswith(prefix)]
        matches, more = await asyncio.to_thread(self._scan, names, regex)
        if not matches:
            return note + "no matches"
        tail = (
            f"\n... more matches not shown (the first {self.match_limit}); narrow the pattern "
            "or the directory"
            if more
            else ""
        )
        return note + "\n".join(matches) + tail

    def toolset(self, max_retries: int = 2) -> FunctionToolset[Any]:
        """The three tools; ``max_retries`` bounds calls with arguments that do not fit the
        schema (a refusal is an answer, not a retry)."""

        async def read_file(path: str, start_line: int = 1) -> str:
            """Read a text file of the repository.

            Args:
                path: The file, relative to the repository root.
                start_line: The first line to show (1-based); long files come in parts.
            """
            return await self.read_file(path, start_line)

        async def list_files(directory: str = ".") -> str:
            """List the repository's files under a directory (recursively).

            Args:
                directory: A directory relative to the repository root; "." for all files.
            """
            return await self.list_files(directory)

        async def search(pattern: str, directory: str = ".") -> str:
            """Find lines matching a Python regular expression (or literal text) in the
            repository's text files; answers path:line: text.

            Args:
                pattern: The regular expression, or plain text to find.
                directory: Search only under this directory, relative to the repository root.
            """
            return await self.search(pattern, directory)

        return FunctionToolset([read_file, list_files, search], max_retries=max_retries)

    # ------------------------------------------------------------------ helpers

    async def files(self) -> list[str]:
        """The files git knows: tracked and new ones that are not ignored, sorted."""
        out = await self.workspace.git(
            "ls-files", "-z", "--cached", "--others", "--exclude-standard"
        )
        return sorted({name for name in out.split("\0") if name})

    def _resolve(self, path: str) -> Path | str:
        try:
            return confined_path(self.root, path)
        except WorkspaceError as exc:
            return f"error: refused: {exc}"

    def _directory(self, directory: str) -> str | None:
        """The prefix of the files under ``directory`` ("" for the root), an ``error: ...``
        refusal, or None when it is not a directory."""
        if directory.strip() in ("", ".", "./"):
            return ""
        target = self._resolve(directory)
        if isinstance(target, str):
            return target
        if not target.is_dir():
            return None
        rel = target.relative_to(self.root).as_posix()
        return "" if rel == "." else rel + "/"

    def _scan(self, names: list[str], regex: re.Pattern[str]) -> tuple[list[str], bool]:
        matches: list[str] = []
        for name in names:
            try:
                target = confined_path(self.root, name)
            except WorkspaceError:
                continue  # e.g. a symlink leading out
            try:
                if not target.is_file() or target.stat().st_size > SEARCH_FILE_BYTES:
                    continue
            except OSError:
                continue
            text = _text(target)
            if text is None:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if regex.search(line[:SEARCH_LINE_CHARS]):
                    if len(matches) == self.match_limit:
                        return matches, True
                    shown = line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + " ..."
                    matches.append(f"{name}:{number}: {shown}")
        return matches, False


def _text(path: Path) -> str | None:
    """The file's text, or None when it is not UTF-8 text (or cannot be read)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
