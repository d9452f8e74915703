"""Usage events, budgets with pause/approve, the response cache, loop stops and context
compaction, on a real pipeline (SQLite, git, pytest) with scripted models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import Budget, LlmUsage, usage_stream
from forgeline.llm.metered import estimate_tokens, usage_rows
from forgeline.llm.scripted import scripted_function
from tests.pipeline.harness import drive, pipeline, run_task, task_events
from tests.scripts import todo_project

REQUEST = "build a todo CLI that stores items in todo.json"


class Counted:
    """A scripted role model that counts its calls and keeps what it was sent."""

    def __init__(self, answers: list[Any], name: str = "counted") -> None:
        self.respond = scripted_function(answers)
        self.calls: list[list[ModelMessage]] = []
        self.model: Model = FunctionModel(self._respond, model_name=name)

    def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls.append(list(messages))
        return self.respond(messages, info)


def forbidden(role: str) -> Model:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise AssertionError(f"the {role} model was called")

    return FunctionModel(respond, model_name=f"todo-{role}")


async def usage_of(p, task_id: str) -> list[LlmUsage]:
    events = await p.store.read_stream(usage_stream(task_id))
    return [e.data for e in events if isinstance(e.data, LlmUsage)]


@pytest.mark.parametrize("mode", ["sequential", "event"])
async def test_every_model_call_records_usage(tmp_path: Path, mode: str):
    async with pipeline(tmp_path) as p:
        task_id, state = await run_task(p, REQUEST, mode, tmp_path / "ws")
        usage = await usage_of(p, task_id)
        rows = usage_rows(task_id, await p.store.read_stream(usage_stream(task_id)))
    assert state.status == "completed"
    # planner, architect, the coder twice (two plan items), reviewer: one call each
    assert sorted(u.role for u in usage) == ["architect", "coder", "coder", "planner", "reviewer"]
    assert all(u.input_tokens > 0 and u.output_tokens > 0 and not u.cache_hit for u in usage)
    assert {u.model for u in usage if u.role == "coder"} == {"todo-coder"}
    total = rows[-1]
    assert (total.role, total.calls) == ("*", 5)
    assert total.input_tokens == sum(u.input_tokens for u in usage)


async def test_a_rerun_of_the_same_task_replays_from_the_cache(tmp_path: Path):
    workspace = tmp_path / "ws"
    async with pipeline(tmp_path) as p:
        _, state = await run_task(p, REQUEST, "sequential", workspace)
        assert state.status == "completed"
    replay = {role: forbidden(role) for role in ("planner", "architect", "coder", "reviewer")}
    async with pipeline(tmp_path, todo_project.models(**replay)) as p:
        second, state = await run_task(p, REQUEST, "sequential", workspace)
        usage = await usage_of(p, second)
        events = [e.type for e in await task_events(p, second)]
    assert state.status == "completed", state.failure
    assert events == todo_project.EVENT_CHAIN
    assert len(usage) == 5 and all(u.cache_hit for u in usage)


async def test_without_the_cache_the_models_are_called_again(tmp_path: Path):
    workspace = tmp_path / "ws"
    async with pipeline(tmp_path) as p:
        await run_task(p, REQUEST, "sequential", workspace)
    planner = Counted([todo_project.PLAN], name="todo-planner")
    async with pipeline(tmp_path, todo_project.models(planner=planner.model), cache=False) as p:
        task_id, state = await run_task(p, REQUEST, "sequential", workspace)
        usage = await usage_of(p, task_id)
    assert state.status == "completed"
    assert len(planner.calls) == 1
    assert not any(u.cache_hit for u in usage)


async def planner_but_not_architect(probe: Path) -> int:
    """A token budget that covers the planner's call but not the architect's after it
    (measured on a probe run: what the planner spent plus the architect's estimate)."""
    architect = Counted([todo_project.ARCHITECTURE], name="todo-architect")
    async with pipeline(probe, todo_project.models(architect=architect.model)) as p:
        task_id, _ = await run_task(p, REQUEST, "sequential", probe / "ws")
        planner = [u for u in await usage_of(p, task_id) if u.role == "planner"]
    spent = sum(u.input_tokens + u.output_tokens for u in planner)
    return spent + estimate_tokens(architect.calls[0]) - 1


@pytest.mark.parametrize("mode", ["sequential", "event"])
async def test_a_budget_pauses_the_task_until_it_is_approved(tmp_path: Path, mode: str):
    budget = await planner_but_not_architect(tmp_path / "probe")
    workspace = tmp_path / "ws"
    architect = Counted([todo_project.ARCHITECTURE], name="todo-architect")
    models = todo_project.models(architect=architect.model)
    async with pipeline(tmp_path, models, budget={"tokens": budget}) as p:
        task_id, state = await run_task(p, REQUEST, mode, workspace)
        assert state.status == "awaiting_approval"
        [paused] = state.paused
        assert paused.stage == "architect"
        assert "budget" in paused.reason and str(budget) in paused.reason
        assert architect.calls == []  # stopped before the call, not after
        spent = sum(u.input_tokens + u.output_tokens for u in await usage_of(p, task_id))
        assert paused.spent_tokens == spent > 0

        await p.approve(task_id, Budget(tokens=100_000))
        state = await drive(p, task_id, mode)
        types = [e.type for e in await task_events(p, task_id)]
    assert state.status == "completed", state.failure
    assert state.budget.tokens == 100_000
    assert len(architect.calls) == 1
    assert types[:6] == [
        "task.initiated",
        "spec.derived",
        "plan.created",
        "task.assigned",
        "task.awaiting_approval",
        "budget.approved",
    ]
    assert [t for t in types if t not in ("task.awaiting_approval", "budget.approved")] == (
        todo_project.EVENT_CHAIN
    )


async def test_approving_a_budget_that_is_still_too_small_pauses_again(tmp_path: Path):
    budget = await planner_but_not_architect(tmp_path / "probe")
    async with pipeline(tmp_path, budget={"tokens": budget}) as p:
        task_id, _ = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        await p.approve(task_id, Budget(tokens=budget + 1))
        state = await drive(p, task_id, "sequential")
        types = [e.type for e in await task_events(p, task_id)]
    assert state.status == "awaiting_approval"
    assert types.count("task.awaiting_approval") == 2


async def test_approve_refuses_a_task_that_is_not_paused(tmp_path: Path):
    from forgeline.errors import InvalidRequestError

    async with pipeline(tmp_path) as p:
        task_id, _ = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        with pytest.raises(InvalidRequestError, match="not waiting for approval"):
            await p.approve(task_id, Budget(tokens=10))


async def test_the_same_rejected_answer_repeated_stops_the_stage(tmp_path: Path):
    bad = {"summary": "no steps", "items": []}  # fails validation: at least one item
    planner = Counted([bad], name="todo-planner")
    async with pipeline(
        tmp_path, todo_project.models(planner=planner.model), output_retries=10, loop_limit=3
    ) as p:
        _, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
    assert state.status == "failed"
    assert "loop detected" in (state.failure or "")
    assert "planner" in (state.failure or "")
    assert "at least 1 item" in (state.failure or "")  # why it was refused
    assert len(planner.calls) == 3  # not the 11 the retries would allow


async def test_a_repeated_tool_call_stops_the_agent(tmp_path: Path):
    from pydantic_ai import Agent

    from forgeline.llm.metered import LoopDetected, Meter, MeteredModel
    from forgeline.store.sqlite import SQLiteEventStore

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("read_file", {"path": "todo.py"})])

    async with SQLiteEventStore(tmp_path / "events.db") as store:
        meter = Meter(store=store, task_id="t1", role="coder", loop_limit=4)
        agent = Agent(MeteredModel(FunctionModel(respond), "scripted", meter), output_type=str)

        @agent.tool_plain
        def read_file(path: str) -> str:
            return "print('hi')"

        with pytest.raises(LoopDetected, match="same tool call 4 times"):
            await agent.run("go")


async def test_a_long_conversation_is_compacted_under_the_budget(tmp_path: Path):
    # The reviewer answers in one conversation, its refused answers sent back to it (the
    # planner and architect ask afresh instead, so theirs never grow).
    junk = "Traceback (most recent call last):\n" + "  frame line of a long error log\n" * 400
    bad = [{"approved": True, "comments": f"attempt {i}\n{junk}"} for i in range(4)]
    reviewer = Counted([*bad, todo_project.APPROVE], name="todo-reviewer")
    async with pipeline(
        tmp_path,
        todo_project.models(reviewer=reviewer.model),
        output_retries=6,
        context_tokens=1_000,
        trim_chars=300,
    ) as p:
        task_id, state = await run_task(p, REQUEST, "sequential", tmp_path / "ws")
        events = await task_events(p, task_id)
    assert state.status == "completed", state.failure
    [compacted] = [e.data for e in events if e.type == "context.compacted"]
    assert compacted.role == "reviewer"
    assert compacted.tokens_after < compacted.tokens_before
    assert compacted.trimmed_chars > 0
    assert compacted.dropped_items  # what was summarised is on record
    # The model's later calls really got the smaller conversation.
    sizes = [estimate_tokens(call) for call in reviewer.calls]
    assert len(sizes) == 5
    assert compacted.tokens_before > 1_000 >= sizes[-1]
    assert sizes[-1] < sizes[-2]
    # A role's compaction stays with that role: the task's context does not carry it.
    assert state.context_summary == ""
    [decision] = [e.data for e in events if e.type == "review.decision"]
    assert decision.approved and decision.comments == ()


async def test_an_answer_too_large_for_the_cache_is_used_but_not_kept(tmp_path: Path):
    from pydantic_ai.messages import ModelRequest, TextPart
    from pydantic_ai.models import ModelRequestParameters

    from forgeline.llm.metered import MAX_CACHED_CHARS, Meter, MeteredModel
    from forgeline.store import SQLiteEventStore

    calls: list[int] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        size = int(prompt_of(messages))
        return ModelResponse(parts=[TextPart("x" * size)])

    def prompt_of(messages: list[ModelMessage]) -> str:
        part = messages[0].parts[0]
        return str(part.content)  # type: ignore[union-attr]

    async with SQLiteEventStore(tmp_path / "f.db") as store:
        meter = Meter(store=store, task_id="t", role="coder")
        model = MeteredModel(FunctionModel(answer, model_name="big"), "function:big", meter)
        params = ModelRequestParameters()
        for size in (100, MAX_CACHED_CHARS + 1):
            ask = [ModelRequest.user_text_prompt(str(size))]
            first = await model.request(ask, None, params)
            again = await model.request(ask, None, params)
            assert first.parts == again.parts
        cached = [e for e in await store.read_all() if e.type == "llm.cached"]
    # the small answer came from the cache the second time; the large one was asked twice
    assert len(calls) == 3
    assert len(cached) == 1 and len(cached[0].data.response) < 1000  # type: ignore[union-attr]
