"""``/metrics`` from the store: a task run by another runtime on the same store counts
as much as one run by the server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from forgeline.config import Settings
from forgeline.llm.gateway import ModelRegistry
from forgeline.runtime import open_runtime
from forgeline.sandbox.local import LocalSpawner
from tests.api.conftest import open_api, server_settings
from tests.pipeline.harness import drive
from tests.scripts import todo_project


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def run_elsewhere(settings: Settings) -> str:
    """A task run to completion by a runtime of its own on the server's store (as
    ``forgeline run --store`` would)."""
    models = ModelRegistry(todo_project.models())  # type: ignore[arg-type]
    async with open_runtime(settings, models=models, spawner=LocalSpawner()) as runtime:
        task_id = await runtime.submit("a todo CLI", "cli-repo")
        await drive(runtime, task_id, "sequential")
        return task_id


def test_metrics_count_what_every_process_recorded(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    for api in open_api(settings):
        assert api.client.get("/metrics").status_code == 401
        before = samples(api.get("/metrics").text)
        assert not any(name == "forgeline_tasks" for name, _ in before)
    task_id = asyncio.run(run_elsewhere(settings))  # while no server runs
    for api in open_api(settings):
        answer = api.get("/metrics")
        assert answer.headers["content-type"].startswith("text/plain")
        got = samples(answer.text)
        assert got[("forgeline_tasks", (("status", "completed"),))] == 1
        assert (
            got[("forgeline_model_calls_total", (("model", "todo-coder"), ("role", "coder")))] == 2
        )
        tokens = (
            "forgeline_model_tokens_total",
            (("kind", "output"), ("model", "todo-coder"), ("role", "coder")),
        )
        assert got[tokens] > 0
        assert got[("forgeline_clarification_requests_total", ())] == 0
        for stage in (
            "planner",
            "assigner",
            "architect",
            "coder",
            "tester",
            "reviewer",
            "deployer",
        ):
            assert got[("forgeline_stage_duration_seconds_count", (("stage", stage),))] >= 1
        assert ("forgeline_sandbox_cpu_seconds_total", (("kind", "test"),)) in got
        assert api.get(f"/api/tasks/{task_id}").json()["status"] == "completed"
