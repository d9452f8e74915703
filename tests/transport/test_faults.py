"""Faults against the real servers: a poisoned task parked and retried, a broker that
goes away for longer than the heartbeat. (The chaos test is in ``test_chaos.py``.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel

from forgeline.core.events import task_stream
from forgeline.llm.scripted import prompt_text, scripted_function
from forgeline.transport.broker import DEAD_QUEUE, Broker, Work
from forgeline.transport.deadletters import dead_letters
from tests.conftest import REPO, RabbitNode
from tests.scripts import todo_project
from tests.transport.conftest import purge, runtime, settings, until, worker

pytestmark = pytest.mark.slow


async def forgeline(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``forgeline`` command in a subprocess (on a thread: the workers of this
    process keep their broker heartbeats)."""
    return await asyncio.to_thread(_forgeline, *args)


def _forgeline(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGELINE_")}
    env |= {"PYTHONPATH": str(REPO), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "forgeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_poisoned_task_is_parked_after_its_retries_and_completes_once_retried(
    tmp_path: Path, store_url: str, broker_url: str
) -> None:
    cured = False
    plan = scripted_function([todo_project.PLAN])

    def planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if "poison" in prompt_text(messages) and not cured:
            raise RuntimeError("the planner chokes on poison")
        return plan(messages, info)

    models = todo_project.models(planner=FunctionModel(planner, model_name="poisoned"))
    config = settings(tmp_path, store_url, broker_url, max_attempts=3)
    async with worker(config, models=models), runtime(config) as submitter:
        poisoned = await submitter.submit("a todo CLI, with poison", tmp_path / "todo")
        healthy = await submitter.submit("a todo CLI storing items", tmp_path / "todo")
        # the healthy task is not held up by the poisoned one
        state = await asyncio.wait_for(submitter.run_until_settled(healthy), 120)
        assert state.status == "completed", state.failure
        with pytest.raises(Exception, match="dead-letter queue") as parked:
            await asyncio.wait_for(submitter.run_until_settled(poisoned), 60)
        assert f"forgeline retry {poisoned}" in str(parked.value)
        [letter] = await dead_letters(submitter.store, poisoned)
        assert (letter.role, letter.event_type, letter.attempts) == ("planner", "spec.derived", 3)
        assert "the planner chokes on poison" in letter.error
        assert (await submitter.state(poisoned)).status == "running"  # not failed: parked

        # the broker holds it too, in the dead-letter queue
        connection = await aio_pika.connect(broker_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(DEAD_QUEUE, durable=True)
            assert queue.declaration_result.message_count == 1

        listed = await forgeline(
            "tasks", "--failed", "--workspace", str(tmp_path / "todo"), "--store", store_url
        )
        assert listed.returncode == 0, listed.stderr
        assert poisoned in listed.stdout and "dead-lettered" in listed.stdout
        assert "chokes on poison" in listed.stdout
        assert healthy not in listed.stdout

        cured = True  # the cause is fixed
        retried = await forgeline(
            "retry", poisoned, "--store", store_url, "--broker", broker_url,
            "--root", str(tmp_path),
        )  # fmt: skip
        assert retried.returncode == 0, retried.stderr
        assert "1 message(s) queued again" in retried.stdout
        state = await asyncio.wait_for(submitter.run_until_settled(poisoned), 120)
        assert state.status == "completed", state.failure
        assert await dead_letters(submitter.store) == []
        events = await submitter.store.read_stream(task_stream(poisoned))
        assert [e.type for e in events] == todo_project.EVENT_CHAIN

    again = await forgeline("retry", poisoned, "--store", store_url, "--broker", broker_url)
    assert again.returncode == 2
    assert "nothing in the dead-letter queue" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.fixture
def own_node() -> Iterator[RabbitNode]:
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.remove()


class HeldPlanner:
    """The planner's scripted answer, held until ``release`` (a model call that outlasts
    a partition, or a run a second copy of its message meets); ``calls`` counts them."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0
        self.plan = scripted_function([todo_project.PLAN])

    async def answer(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.calls += 1
        self.reached.set()
        await self.release.wait()
        return self.plan(messages, info)

    def model(self) -> FunctionModel:
        return FunctionModel(self.answer, model_name="slow")


async def test_a_partition_longer_than_the_heartbeat_ends_with_the_stage_done_once(
    tmp_path: Path, store_url: str, own_node: RabbitNode
) -> None:
    await purge(own_node.url)
    planner = HeldPlanner()
    models = todo_project.models(planner=planner.model())
    config = settings(tmp_path, store_url, own_node.url, heartbeat=2.0)
    async with worker(config, models=models) as serving, runtime(config) as submitter:
        task_id = await submitter.submit("a todo CLI", tmp_path / "todo")
        await asyncio.wait_for(planner.reached.wait(), 60)
        handled = serving.handled  # the spec's step, acknowledged before the partition
        await asyncio.to_thread(own_node.stop)  # the worker is cut off from the broker
        await until(lambda: not serving.broker.connected, 10, "the worker noticed")
        await asyncio.sleep(5)  # longer than the heartbeat
        planner.release.set()  # the stage finishes and is recorded while the broker is away ...
        stream = task_stream(task_id)
        for _ in range(200):
            if "plan.created" in [e.type for e in await submitter.store.read_stream(stream)]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the planner's result was not recorded without the broker")
        assert serving.handled == handled  # (its message could not be acknowledged)
        await asyncio.to_thread(own_node.start)  # ... and the broker comes back
        state = await asyncio.wait_for(submitter.run_until_settled(task_id), 120)
        assert state.status == "completed", state.failure
        events = await submitter.store.read_stream(task_stream(task_id))
        assert [e.type for e in events] == todo_project.EVENT_CHAIN
        assert [e.type for e in events].count("plan.created") == 1
        assert planner.calls == 1  # the redelivered message found the stage done
        assert [e.version for e in events] == list(range(1, len(events) + 1))


async def test_a_message_given_out_twice_at_once_runs_once(
    tmp_path: Path, store_url: str, broker_url: str
) -> None:
    # a relay killed between publishing and recording how far it got publishes again, and
    # a broker restart gives out what was unacknowledged, unmarked: the same work twice,
    # here while its first run is still going. The second waits for the first, then
    # finds the work done; no commit is made twice, none stands that no event names.
    planner = HeldPlanner()
    models = todo_project.models(planner=planner.model())
    config = settings(tmp_path, store_url, broker_url)
    async with worker(config, models=models) as serving, runtime(config) as submitter:
        task_id = await submitter.submit("a todo CLI", tmp_path / "todo")
        stream = task_stream(task_id)
        try:
            await asyncio.wait_for(planner.reached.wait(), 60)
            [trigger] = [
                e for e in await submitter.store.read_stream(stream) if e.type == "spec.derived"
            ]
            async with Broker(broker_url) as broker:
                await broker.publish([Work.of(trigger, "planner")])
            await until(lambda: len(serving._in_flight) >= 2, 30, "the second copy is taken")
        finally:
            planner.release.set()
        state = await asyncio.wait_for(submitter.run_until_settled(task_id), 120)
        events = await submitter.store.read_stream(stream)
    assert state.status == "completed", state.failure
    assert planner.calls == 1
    assert [e.type for e in events] == todo_project.EVENT_CHAIN
    log = subprocess.run(
        ["git", "log", "--format=%B", f"{state.base_commit}..{state.branch}"],
        cwd=tmp_path / "todo",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.count(f"Event: spec.derived {trigger.id}") == 1


def test_work_messages_round_trip() -> None:
    work = Work("coder", "t1", "e1", 7, "plan.item.dispatched").retried("boom")
    assert Work.from_body(work.message().body) == work
