"""A restarted daemon does not redo a cycle it recorded: it finishes the changes in flight
(their tasks submitted once) and waits out the interval before the next cycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

from forgeline.core.events import EVOLVE_STREAM, CycleCompleted, CycleRecorded
from forgeline.evolve.daemon import EvolutionDaemon
from forgeline.evolve.reads import load_changes
from tests.evolve import project
from tests.evolve.harness import evolve_config, evolving, within


async def test_a_restarted_daemon_finishes_the_recorded_cycle_instead_of_redoing_it(
    tmp_path: Path,
) -> None:
    repo = project.make_repository(tmp_path)
    config = evolve_config(signals=("test",))
    async with evolving(repo, evolve=config) as runtime:
        # The first process records a cycle and submits its change, then dies.
        daemon = EvolutionDaemon(runtime, repo)
        recorded = await within(daemon.cycle())
        [pending] = await load_changes(runtime.store)
        started = await daemon.agent.start(pending)
        assert started.status == "in_progress"
    async with evolving(repo, evolve=config) as runtime:
        daemon = EvolutionDaemon(runtime, repo)
        await within(daemon.run(once=True))
        [change] = await load_changes(runtime.store)
        assert change.status == "completed" and change.task_id == started.task_id
        assert [row.id for row in await runtime.store.tasks()] == [change.task_id]
        log = [e.data for e in await runtime.store.read_stream(EVOLVE_STREAM)]
        assert [d.cycle for d in log if isinstance(d, CycleRecorded)] == [recorded.cycle]
        assert [d.cycle for d in log if isinstance(d, CycleCompleted)] == [recorded.cycle]

    # Started again with an interval that has not passed since that cycle, it records
    # nothing new while it runs.
    async with evolving(repo, evolve=config) as runtime:
        stop = asyncio.Event()
        waiting = asyncio.Event()
        said: list[str] = []

        def report(line: str) -> None:
            said.append(line)
            if line.startswith("next cycle at"):
                waiting.set()

        daemon = EvolutionDaemon(runtime, repo, report=report)
        running = asyncio.create_task(daemon.run(interval=3600, stop=stop))
        await within(waiting.wait())
        stop.set()
        await within(running)
        log = [e.data for e in await runtime.store.read_stream(EVOLVE_STREAM)]
        assert [d.cycle for d in log if isinstance(d, CycleRecorded)] == [recorded.cycle]
        assert not [line for line in said if line.startswith("cycle ")]
