"""The OpenAPI schema as a contract, tried by schemathesis against the running server.

Every operation in ``/openapi.json`` gets generated requests, valid ones and invalid ones,
with a write key (the scope the issue names: admin routes answer 403, and the admin key
is not handed to a fuzzer that would revoke it). Path parameters sometimes name a real
task (one waiting for an answer) and a real workspace, so the task routes answer more
than 404. Every answer must be no 5xx, a status the schema lists for the operation, the
content type it lists, and a body that matches its schema.

The default run tries a few examples per operation; ``FORGELINE_SCHEMA_EXAMPLES`` asks
for more (the ``slow`` test does 50).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.live import Live, live_server
from tests.scripts import todo_project

CLARIFY = {
    "summary": "todo",
    "items": [
        {"id": "q", "title": "Which file should hold the items?", "kind": "clarification"},
        *todo_project.PLAN["items"],
    ],
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from forgeline.llm.scripted import scripted_model

    models = todo_project.models(planner=scripted_model([CLARIFY]))
    with live_server(tmp_path_factory.mktemp("schema"), models, rate_limit=0) as server:
        yield server


def fuzz(live: Live, examples: int) -> list[str]:
    """Run every operation of the live server's schema; the failures, one text each."""
    with live.client("write") as client:
        task = client.post("/api/tasks", json={"request": "a todo CLI", "workspace": "todo"})
        assert task.status_code == 201, task.text
    waiting = live.settle(task.json()["id"])
    assert waiting["status"] == "needs_clarification"
    real = {"task_id": waiting["id"], "name": "todo"}

    headers = {"Authorization": f"Bearer {live.keys['write']}"}
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", headers=headers)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    tried: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.label)
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=cases, use_real=st.booleans())
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case, use_real: bool) -> None:
            params: dict[str, Any] = case.path_parameters or {}
            if use_real:
                for name, value in real.items():
                    if name in params:
                        params[name] = value
            # the live stream never ends: what it sent in a second is its answer
            seconds = 1 if case.operation.path == "/api/events/stream" else 10
            case.call_and_validate(
                base_url=live.url, headers=headers, checks=checks, timeout=seconds
            )

        try:
            check()
        except Exception as failure:  # every operation's failure is reported
            failures.append(f"{operation.label}:\n{failure}")
    assert len(tried) >= 25, f"only {len(tried)} operations in the schema: {tried}"
    return failures


def test_every_operation_answers_as_its_schema_says(live: Live) -> None:
    examples = int(os.environ.get("FORGELINE_SCHEMA_EXAMPLES", "15"))
    failures = fuzz(live, examples)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_every_operation_answers_as_its_schema_says_at_length(tmp_path: Path) -> None:
    from forgeline.llm.scripted import scripted_model

    models = todo_project.models(planner=scripted_model([CLARIFY]))
    with live_server(tmp_path, models, rate_limit=0) as server:
        failures = fuzz(server, 50)
    assert not failures, "\n\n".join(failures)
