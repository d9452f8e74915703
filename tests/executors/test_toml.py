"""Merging into TOML text keeps what it does not own and refuses what it cannot do safely."""

from __future__ import annotations

import tomllib

import pytest

from forgeline.executors._toml import TomlMergeError, merge_root_keys, merge_table, value

TEXT = """\
# top comment
name = "x"

[tool.ruff]
line-length = 80  # replaced with its table

[tool.ruff.lint]
select = ["E"]

[tool.other]
doc = \"\"\"
[not.a.header]
\"\"\"
"""


def test_a_table_is_rewritten_where_it_was_and_the_rest_kept() -> None:
    merged = merge_table(TEXT, ("tool", "ruff"), {"lint": {"ignore": ["E501"]}}, "f")
    assert merged.startswith('# top comment\nname = "x"\n\n[tool.ruff]\n')
    assert merged.index("[tool.ruff]") < merged.index("[tool.other]")
    assert tomllib.loads(merged)["tool"]["ruff"] == {
        "line-length": 80,
        "lint": {"select": ["E"], "ignore": ["E501"]},
    }
    assert tomllib.loads(merged)["tool"]["other"]["doc"] == "[not.a.header]\n"


def test_a_new_table_goes_at_the_end() -> None:
    merged = merge_table(TEXT, ("tool", "new"), {"a": {"b": 1}, "c": [1, 2]}, "f")
    assert merged.startswith(TEXT)
    assert merged.endswith("\n[tool.new]\nc = [1, 2]\n\n[tool.new.a]\nb = 1\n")


def test_root_keys_are_replaced_or_added_before_the_first_table() -> None:
    merged = merge_root_keys(TEXT, {"name": "y", "mode": "event"}, "f")
    assert merged.startswith('# top comment\nname = "y"\nmode = "event"\n\n[tool.ruff]')


def test_values_are_written_as_toml() -> None:
    assert value({"a b": [1.5, True, 'q"\x7f']}) == '{ "a b" = [1.5, true, "q\\"\\u007f"] }'
    with pytest.raises(TomlMergeError, match="no null"):
        value(None)


def test_what_cannot_be_merged_safely_is_refused() -> None:
    with pytest.raises(TomlMergeError, match="not valid TOML"):
        merge_table("[a\n", ("a",), {"b": 1}, "f")
    with pytest.raises(TomlMergeError, match="is a value, not a table"):
        merge_table("a = 1\n", ("a",), {"b": 1}, "f")
    # the table is also defined by dotted keys elsewhere: rewriting would lose or clash
    with pytest.raises(
        TomlMergeError, match="cannot merge into f safely: the result would not be valid"
    ):
        merge_table("[tool]\nruff.x = 1\n", ("tool", "ruff"), {"y": 2}, "f")
    with pytest.raises(TomlMergeError, match="spans several lines"):
        merge_root_keys("items = [\n  1,\n]\n", {"items": [2]}, "f")
