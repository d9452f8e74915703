"""The ``files`` edit format: whole files as Markdown text, read back exactly."""

from __future__ import annotations

import pytest
from pydantic_ai import ModelRetry

from forgeline.config import CoderConfig
from forgeline.llm.outputs import parse_files

#: Quotes, backslashes and escapes: what a small model under a JSON grammar cuts off.
SERVER = """import json


def body(value):
    return json.dumps({"status": value}).encode() + b"\\n"


SEPARATOR = '\\t'
WINDOWS = "C:\\\\temp"
"""


def test_files_come_back_byte_for_byte_with_their_paths_and_summary() -> None:
    answer = (
        "Adds the server and its test.\n\n"
        f"server.py\n```python\n{SERVER}```\n\n"
        "tests/test_server.py\n```python\nfrom server import body\n```\n"
    )
    change = parse_files(answer)
    assert change.summary == "Adds the server and its test."
    assert [(f.path, f.content) for f in change.files] == [
        ("server.py", SERVER),
        ("tests/test_server.py", "from server import body\n"),
    ]
    compile(change.files[0].content, "server.py", "exec")


def test_blank_lines_before_the_closing_fence_are_not_content() -> None:
    # The fixer echoed the files with a blank line before each fence: that must read as
    # the same files (no change), not as a change that costs a test run.
    change = parse_files("app.py\n```python\nx = 1\n\n\n```\n")
    assert [(f.path, f.content) for f in change.files] == [("app.py", "x = 1\n")]


@pytest.mark.parametrize(
    "heading",
    [
        "**app.py**",
        "### `app.py`",
        "File: app.py",
        "app.py:",
        "# app.py",
        "```python app.py",
        "```app.py",
        "Here is the updated app.py:",
        "<app.py>",
    ],
)
def test_a_path_is_read_through_the_decoration_small_models_add(heading: str) -> None:
    fence = heading if heading.startswith("```") else f"{heading}\n```python"
    change = parse_files(f"{fence}\nx = 1\n```\n")
    assert [(f.path, f.content) for f in change.files] == [("app.py", "x = 1\n")]


def test_an_answer_cut_off_inside_a_block_keeps_what_came() -> None:
    change = parse_files("app.py\n```python\nx = 1<|im_end|>")
    assert [(f.path, f.content) for f in change.files] == [("app.py", "x = 1\n")]


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ("Here is the code:\n```python\nx = 1\n```\n", "no file path before it"),
        ("<file path>\n```python\nx = 1\n```\n", "no file path before it"),
        ("app.py\n\nIt sets x.\n```python\nx = 1\n```\n", "no file path before it"),
        ("I would write x = 1 in app.py.", "no file in the answer"),
        ("", "no file in the answer"),
    ],
)
def test_an_answer_without_a_named_file_goes_back_with_the_format(answer: str, says: str) -> None:
    with pytest.raises(ModelRetry) as caught:
        parse_files(answer)
    assert says in str(caught.value)
    assert "app.py\n```python" in str(caught.value)


def test_unnamed_blocks_take_the_planned_files_no_block_names() -> None:
    """A small model copies the layout's placeholder (``<file path>``) or names nothing:
    its blocks go to the step's files in order, and blocks beyond those are not files."""
    answer = (
        "<file path>\n```python\ndef slug(text):\n    return text\n```\n\n"
        "test_slug.py\n```python\nfrom slug import slug\n```\n\n"
        "```bash\npytest\n```\n"
    )
    change = parse_files(answer, planned=("slug.py", "test_slug.py"))
    assert [f.path for f in change.files] == ["slug.py", "test_slug.py"]
    assert change.files[0].content == "def slug(text):\n    return text\n"
    with pytest.raises(ModelRetry) as caught:
        parse_files("```python\nx = 1\n```\n", planned=())
    assert "no file path before it" in str(caught.value)


def test_a_block_may_name_its_file_in_a_first_line_comment() -> None:
    # The 1.5B coder answered "```python" then "# app.py" as the block's first line.
    change = parse_files("No new files.\n\n```python\n# app.py\nimport json\n```\n")
    assert [(f.path, f.content) for f in change.files] == [("app.py", "import json\n")]
    change = parse_files("```json\n# File: data/todo.json\n[]\n```\n")
    assert [(f.path, f.content) for f in change.files] == [("data/todo.json", "[]\n")]
    # an ordinary first comment is code, not a name
    for first in ("# v1.0 of the parser", "# Compute totals.", "#!/usr/bin/env python3"):
        with pytest.raises(ModelRetry):
            parse_files(f"```python\n{first}\nx = 1\n```\n")


def test_auto_picks_text_files_for_a_local_model_and_structured_output_otherwise() -> None:
    assert CoderConfig().format_for(local=True) == "files"
    assert CoderConfig().format_for(local=False) == "whole"
    assert CoderConfig(edit_format="diff").format_for(local=True) == "diff"
    assert CoderConfig(edit_format="files").format_for(local=False) == "files"
