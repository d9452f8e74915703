"""Stored payloads are read in the current shape: older versions are upcast."""

from __future__ import annotations

import json

from forgeline.core.events import (
    PAYLOAD_VERSIONS,
    TaskInitiated,
    dump_data,
    parse_data,
    upcast,
)

V1_WORKTREE = {
    "type": "task.initiated",
    "request": "todo cli",
    "workspace": "/home/me/todo/.forgeline/worktrees/0123456789ab",
    "branch": "forgeline/0123456789ab",
    "base_commit": "c0",
    "max_fix_rounds": 2,
}


def test_a_version_1_task_initiated_reads_as_the_current_shape() -> None:
    data = parse_data(json.dumps(V1_WORKTREE))  # as stored: JSON text
    assert isinstance(data, TaskInitiated)
    assert data.schema_version == PAYLOAD_VERSIONS["task.initiated"] == 2
    assert data.repository == "todo"
    assert data.checkout == "/home/me/todo/.forgeline/worktrees/0123456789ab"
    assert (data.request, data.branch, data.max_fix_rounds) == (
        "todo cli",
        V1_WORKTREE["branch"],
        2,
    )
    # stored again, it stays what it is
    assert parse_data(dump_data(data)) == data


def test_a_version_1_task_from_before_worktrees_keeps_its_repository_as_its_checkout() -> None:
    data = parse_data({**V1_WORKTREE, "workspace": "/home/me/todo"})
    assert isinstance(data, TaskInitiated)
    assert (data.repository, data.checkout) == ("todo", "/home/me/todo")


def test_current_payloads_name_their_repository_not_a_path() -> None:
    data = TaskInitiated(request="r", repository="team/todo", branch="b", base_commit="c")
    stored = json.loads(dump_data(data))
    assert stored["schema_version"] == 2 and stored["repository"] == "team/todo"
    assert "workspace" not in stored and stored["checkout"] is None
    assert upcast(stored) == stored  # nothing to do
    assert upcast({"type": "plan.item.dispatched", "item_id": "a"}) == {
        "type": "plan.item.dispatched",
        "item_id": "a",
    }
