"""Which plan items go to a pattern executor, and which to the coder back-end."""

from __future__ import annotations

import pytest

from forgeline.core.events import NodeKind, PlanItem
from forgeline.executors.router import CODER, RouterError, route
from tests.executors.helpers import MakeRepo


def item(description: str = "", **fields: object) -> PlanItem:
    values: dict[str, object] = {"id": "s1", "title": "a step", "description": description}
    return PlanItem.model_validate(values | fields)


def test_an_explicit_pattern_line_with_json_inputs_routes_to_that_pattern() -> None:
    chosen = route(item('pattern:config_setup\n{"file": ".gitignore", "patterns": [".venv/"]}'))
    assert chosen is not None
    assert chosen.name == "config_setup"
    assert chosen.rule == "explicit"
    assert chosen.inputs == {"file": ".gitignore", "patterns": [".venv/"]}


def test_inputs_may_follow_on_the_same_line_or_be_absent() -> None:
    same_line = route(item('  pattern: implementation_status {"files": ["a.py"]}'))
    assert same_line is not None
    assert same_line.inputs == {"files": ["a.py"]}
    bare = route(item("pattern:automation_enabled_status"))
    assert bare is not None
    assert bare.inputs == {}


def test_the_items_files_fill_a_files_input_that_was_not_given() -> None:
    chosen = route(item("pattern:implementation_status", files=("a.py", "b.py")))
    assert chosen is not None
    assert chosen.inputs == {"files": ["a.py", "b.py"]}
    given = route(item('pattern:implementation_status {"files": ["c.py"]}', files=("a.py",)))
    assert given is not None
    assert given.inputs == {"files": ["c.py"]}
    # a pattern without a files input does not get one
    other = route(item("pattern:automation_enabled_status", files=("a.py",)))
    assert other is not None
    assert other.inputs == {}


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("pattern:make_coffee", "'make_coffee', which does not exist"),
        ("pattern:config_setup\nwrite .gitignore please", "must be one JSON object"),
        ('pattern:config_setup ["a"]', "must be one JSON object"),
    ],
)
def test_an_explicit_request_that_cannot_be_honoured_is_an_error(
    description: str, message: str
) -> None:
    with pytest.raises(RouterError, match=message):
        route(item(description))


@pytest.mark.parametrize(
    "title", ["implementation_status", "Implementation status", "automation-enabled-status"]
)
def test_a_tool_call_titled_with_a_pattern_name_routes_to_it(title: str) -> None:
    chosen = route(item("", title=title, kind=NodeKind.TOOL_CALL, files=("x.py",)))
    assert chosen is not None
    assert chosen.rule == "tool_call"
    assert chosen.name == title.lower().replace(" ", "_").replace("-", "_")


def test_a_tool_call_takes_a_json_description_as_inputs() -> None:
    chosen = route(
        item(
            '{"file": ".gitignore", "patterns": ["dist/"]}',
            title="Config setup",
            kind=NodeKind.TOOL_CALL,
        )
    )
    assert chosen is not None
    assert chosen.inputs == {"file": ".gitignore", "patterns": ["dist/"]}


@pytest.mark.parametrize(
    "planned",
    [
        item("Write the store module with add/list/remove."),
        item("", title="implementation_status"),  # processing, not a tool call
        item("", title="run the linter", kind=NodeKind.TOOL_CALL),
        item("uses pattern:config_setup somewhere in the text"),
    ],
)
def test_everything_else_goes_to_the_coder_back_end(planned: PlanItem) -> None:
    assert route(planned) is CODER
    assert CODER is None


async def test_a_route_builds_the_context_its_executor_runs_with(make_repo: MakeRepo) -> None:
    ws = await make_repo({"a.py": "A = 1\n"})
    chosen = route(item("pattern:implementation_status", id="s9", files=("a.py",)))
    assert chosen is not None
    context = chosen.context(ws)
    assert context.item is not None
    assert context.item.id == "s9"
    assert chosen.executor.validate_inputs(context) == []
    result = await chosen.executor.execute(context)
    assert result.report is not None
    assert result.report["total"] == 1


def test_a_custom_registry_replaces_the_built_in_one() -> None:
    assert route(item("", title="implementation_status", kind=NodeKind.TOOL_CALL), {}) is CODER
    with pytest.raises(RouterError, match=r"known: none"):
        route(item("pattern:implementation_status"), {})
