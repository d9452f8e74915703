"""The terminal tool in the coder's hands where the tier allows tool use: commands run in
the worktree, each recorded, bounded per step, and nothing they write slips past the patch
engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import ToolCommand
from forgeline.llm.scripted import prompt_text
from forgeline.pipeline.commands import BUDGET_RULE
from tests.pipeline.harness import pipeline, run_task, task_events
from tests.scripts import todo_project

STRAY = ["python", "-c", "open('stray.txt', 'w').write('not through the patch engine')"]


async def test_commands_are_recorded_bounded_and_their_files_never_land(tmp_path: Path) -> None:
    answers: list[str] = []

    def coder(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        step_a = "Implement step [a]" in prompt_text(messages)
        if step_a and len(returns) < 2:  # one command, then another, then the answer
            assert "run_command" in {t.name for t in info.function_tools}
            argv = STRAY if not returns else ["ls"]
            call = ToolCallPart("run_command", {"argv": argv}, tool_call_id=f"c{len(returns)}")
            return ModelResponse(parts=[call])
        answers.extend(str(p.content) for p in returns)
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, todo_project.code_for(messages))]
        )

    models = todo_project.models(coder=FunctionModel(coder))
    settings = {"profiles": {"frontier": {"commands": 1}}}
    async with pipeline(tmp_path, models, **settings) as p:
        task_id, state = await run_task(p, "todo cli", "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
        worktree = p.worktree(state).path
    assert state.status == "completed", state.failure
    commands = [e for e in events if isinstance(e.data, ToolCommand)]
    records = [e.data for e in commands if isinstance(e.data, ToolCommand)]
    ran, refused = records
    assert ran.argv == tuple(STRAY) and ran.exit_code == 0 and not ran.denied
    assert refused.argv == ("ls",) and refused.denied and refused.rule == BUDGET_RULE
    assert all(e.actor == "coder" for e in commands)
    assert commands[1].causation_id == commands[0].id  # chained, one per cause
    assert any("refused: this step may run 1 command(s)" in a for a in answers)
    # whatever a command wrote was dropped before the step's change landed
    assert not (worktree / "stray.txt").exists()
    log = subprocess.run(
        ["git", "log", "--name-only", "--format=%s", f"{state.base_commit}..HEAD"],
        cwd=worktree, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "stray.txt" not in log


async def test_the_small_tier_gives_the_model_no_tools_and_plans_in_a_repository_with_code(
    tmp_path: Path,
) -> None:
    seen: list[set[str]] = []

    def coder(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append({t.name for t in info.function_tools})
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, todo_project.code_for(messages))]
        )

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "util.py").write_text("VALUE = 1\n")  # code already there: the planner runs
    models = todo_project.models(coder=FunctionModel(coder))
    async with pipeline(tmp_path, models, profile="small") as p:
        task_id, state = await run_task(
            p, "build a todo CLI that stores items in todo.json", "sequential", ws
        )
        types = [e.type for e in await task_events(p, task_id)]
    assert state.status == "completed", state.failure
    assert types[:3] == ["task.initiated", "spec.derived", "plan.created"]
    assert seen and all(tools == set() for tools in seen)
    assert "review.skipped" in types
