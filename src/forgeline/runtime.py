"""One runtime for every entry point: forgeline's services built once, work driven, shut
down cleanly.

``open_runtime(settings)`` builds the store, the model registry, the process spawner and
the pipeline, and an ``Execution`` (``pipeline/execution.py``) that does the recorded
work; the CLI, the server (``forgeline serve``), the distributed worker, the evolution
daemon (``forgeline.evolve``), the test harness and the benchmarks enter through it.
Nothing else builds these for a run. It sets up the log lines and traces of
``[telemetry]`` and, with ``[github] open_pr`` or ``[email]``, the delivery of the tasks'
outcomes (``pipeline/delivery.py``). Leaving the context drains the execution (work in
flight is finished and recorded), stops the web previews this process started (unless
``keep_previews``), closes the models' connections and the local model's server, closes
the store and flushes the traces.

Submitting and running are apart: ``submit`` only records a task; ``run_until_settled``
has the execution work on it until it needs a person, and stops its work in flight at
once when it is cancelled (here or by another process); ``follow`` yields a task's
events as they are recorded, whoever records them (with ``activity``, its stages'
progress and log lines too).
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from forgeline.config import Settings
from forgeline.core.events import Budget, Event, TaskCancelled, activity_stream, task_stream
from forgeline.core.task import TaskState, settled
from forgeline.errors import ConfigError, ForgelineError, InvalidRequestError, TaskNotFoundError
from forgeline.llm import local
from forgeline.llm.gateway import ModelRegistry
from forgeline.observability.logs import configure_logging
from forgeline.observability.tracing import Tracing
from forgeline.pipeline.base import Services
from forgeline.pipeline.delivery import Delivery, stop_following
from forgeline.pipeline.execution import Execution, ExecutionFactory, Mode, for_mode
from forgeline.pipeline.runner import Pipeline, Until
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.select import UnsafeSpawnerWarning, choose_spawner
from forgeline.sandbox.spawner import ProcessSpawner
from forgeline.store import open_store
from forgeline.store.base import EventStore
from forgeline.workspace.git import GitWorkspace
from forgeline.workspace.layout import Workspaces

__all__ = ["Runtime", "open_runtime"]


class Runtime:
    """forgeline's services and pipeline, open; built by ``open_runtime``."""

    def __init__(self, services: Services, pipeline: Pipeline, execution: Execution) -> None:
        self.services = services
        self.pipeline = pipeline
        self.execution = execution
        self.delivery: Delivery | None = None
        """Pull requests and e-mails on the tasks' outcomes (``[github] open_pr``,
        ``[email]``); None when neither is configured."""

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def store(self) -> EventStore:
        return self.services.store

    @property
    def models(self) -> ModelRegistry:
        return self.services.models

    @property
    def spawner(self) -> ProcessSpawner:
        return self.services.spawner

    @property
    def workspaces(self) -> Workspaces:
        return self.services.workspaces

    # ------------------------------------------------------------------- tasks

    async def submit(
        self,
        request: str,
        repository: str | Path,
        *,
        max_fix_rounds: int | None = None,
        max_review_rounds: int | None = None,
        budget: Budget | None = None,
        task_id: str | None = None,
        base: str | None = None,
    ) -> str:
        """Record a new task on ``repository`` (a name under the workspaces root, or a path
        inside it) and return its id; see ``Pipeline.submit``. Nothing runs yet. With
        ``[transport] git_remote`` and a broker, the task's branch is pushed there for the
        workers."""
        task_id = await self.pipeline.submit(
            request,
            repository,
            max_fix_rounds=max_fix_rounds,
            max_review_rounds=max_review_rounds,
            budget=budget,
            task_id=task_id,
            base=base,
        )
        git_remote = self.settings.transport.git_remote
        if git_remote is not None and self.settings.broker is not None:
            from forgeline.transport.remote import publish_task

            await publish_task(self.workspaces, git_remote, await self.state(task_id))
        return task_id

    async def state(self, task_id: str) -> TaskState:
        """The task's latest state (``TaskNotFoundError`` for an unknown id)."""
        return await self.pipeline.state(task_id)

    async def task_id(self, given: str) -> str:
        """The id of the task ``given`` names: its id, or (as git takes a commit) a
        prefix that only its id starts with. ``TaskNotFoundError`` for none, and an
        ``InvalidRequestError`` listing them for an ambiguous prefix."""
        given = given.strip()
        if not given:
            raise TaskNotFoundError(given)
        ids = [row.id for row in await self.store.tasks()]
        if given in ids:
            return given
        matching = sorted(i for i in ids if i.startswith(given))
        if len(matching) == 1:
            return matching[0]
        if not matching:
            raise TaskNotFoundError(given)
        shown = ", ".join(matching[:5]) + (", ..." if len(matching) > 5 else "")
        raise InvalidRequestError(
            f"task id {given!r} is ambiguous: {len(matching)} tasks start with it ({shown}); "
            "give more of the id"
        )

    async def run_until_settled(
        self, task_id: str, *, stop: asyncio.Event | None = None, mode: Mode | None = None
    ) -> TaskState:
        """Have the execution work on the task until it is settled (finished, or waiting
        for an answer or an approval) or ``stop`` is set, and return its state. The work
        in flight when ``stop`` is set is finished and recorded first. A task-scoped
        execution then delivers the task's new outcomes (``delivery``).

        ``mode`` drives this one task in this process in that mode instead of with the
        runtime's execution (tests compare the modes this way)."""
        stop = stop or asyncio.Event()
        execution = self.execution if mode is None else for_mode(mode)(self.pipeline)
        state = await self.pipeline.state(task_id)
        delivery = self.delivery if execution.owns_task else None  # else: its subscriber
        if delivery is not None:
            await delivery.watch(task_id)
        if not settled(state):
            if execution.owns_task:
                await self.pipeline.recover(task_id)
            watcher = asyncio.create_task(self._interrupt_when_cancelled(task_id, state.version))
            try:
                await execution.drive(task_id, stop)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            state = await self.pipeline.state(task_id)
        if delivery is not None:
            await delivery.catch_up(task_id)
        return state

    async def interrupt(self, task_id: str) -> int:
        """Stop the task's stage runs in flight in this process at once; nothing they
        would record is recorded, and the task can be resumed (``Pipeline.interrupt``)."""
        return await self.pipeline.interrupt(task_id)

    async def _interrupt_when_cancelled(self, task_id: str, after: int) -> None:
        """Interrupt the task's work here as soon as ``task.cancelled`` is recorded, by
        this process or another (``forgeline cancel``)."""
        store = self.store
        stream = task_stream(task_id)
        while True:
            mark = store.commit_count
            for event in await store.read_stream(stream, after_version=after):
                after = event.version
                if isinstance(event.data, TaskCancelled):
                    await self.pipeline.interrupt(task_id)
                    return
            await store.wait_for_append(mark)

    async def follow(
        self,
        task_id: str,
        *,
        after_version: int = 0,
        until: Until | None = settled,
        stop: asyncio.Event | None = None,
        activity: bool = False,
        activity_after: int | None = None,
    ) -> AsyncIterator[Event]:
        """The task's events after ``after_version``, as they are recorded (by this
        process or another), until ``until(state)`` holds (None: forever) or ``stop`` is
        set; every event recorded before that is yielded.

        With ``activity``, the events of its ``activity-<task>`` stream too (the stages'
        ``stage.progress`` and ``stage.log``; after version ``activity_after``, default:
        those recorded from now on when ``after_version`` is past the start, else all),
        each stream's in its order and both by position as far as they were read
        together."""
        store = self.store
        streams = {task_stream(task_id): after_version}
        if activity:
            if activity_after is None:
                activity_after = (
                    0
                    if after_version == 0
                    else await store.stream_version(activity_stream(task_id))
                )
            streams[activity_stream(task_id)] = activity_after
        while True:
            mark = store.commit_count  # before reading: no append slips between the two
            done = (stop is not None and stop.is_set()) or (
                until is not None and until(await self.pipeline.state(task_id))
            )
            new: list[Event] = []
            for stream, seen in streams.items():
                events = await store.read_stream(stream, after_version=seen)
                if events:
                    streams[stream] = events[-1].version
                    new += events
            for event in sorted(new, key=lambda e: e.position) if activity else new:
                yield event
            if done:
                return
            await store.wait_for_append(mark)

    async def answer(self, task_id: str, text: str) -> None:
        await self.pipeline.answer(task_id, text)

    async def approve(self, task_id: str, budget: Budget) -> None:
        """Give a task paused by its budget a new budget (totals for the whole task); its
        paused stages then run again."""
        await self.pipeline.approve(task_id, budget)

    async def cancel(self, task_id: str, reason: str = "cancelled by user") -> None:
        await self.pipeline.cancel(task_id, reason)

    async def stop_preview(self, task_id: str) -> int | None:
        """Stop the task's web preview (started here or elsewhere); its pid, or None."""
        return await self.pipeline.stop_preview(task_id)

    def worktree(self, state: TaskState) -> GitWorkspace:
        return self.workspaces.worktree(state)

    async def commits(self, state: TaskState) -> list[tuple[str, str]]:
        """The task branch's commits (short sha, subject), oldest first; none if its
        worktree is gone."""
        try:
            return await self.worktree(state).log(state.base_commit, state.head)
        except ForgelineError:
            return []

    # ---------------------------------------------------------------- shutdown

    async def _stop_previews(self) -> None:
        for task_id in list(self.services.previews):
            with contextlib.suppress(ForgelineError):
                await self.pipeline.stop_preview(task_id)
        for process in self.services.previews.values():  # any left: not recorded as ours
            await process.stop()
        self.services.previews.clear()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    agents: bool = True,
    execution: ExecutionFactory | None = None,
    models: ModelRegistry | None = None,
    spawner: ProcessSpawner | None = None,
    pipeline: Callable[[Services], Pipeline] = Pipeline,
    keep_previews: bool = False,
    warn: Callable[[str], None] | None = None,
    create: bool = True,
    tracing: Tracing | None = None,
) -> AsyncIterator[Runtime]:
    """Build forgeline for ``settings`` and yield it; shut it down on the way out.

    - ``agents=False``: for commands that only read or record a person's command
      (``tasks``, ``status``, ``cancel`` ...): no model chains are built and no sandbox
      is looked for.
    - ``execution``: how work gets done; default the task-scoped execution of
      ``settings.mode`` (``Sequential`` or ``TaskWorkers``), or with ``settings.broker``
      the broker's workers (``transport.BrokerExecution``). A server or daemon passes
      ``SharedWorkers`` (every task in the store, for the runtime's life).
    - ``models``, ``spawner``: given instead of built from the settings (tests, scripted
      models); ``pipeline``: builds the pipeline from the services (a benchmark's
      instant agents).
    - ``create=False``: open an existing store only ("no forgeline store at ..."
      otherwise), for commands that read or act on recorded tasks: they create nothing.
    - ``keep_previews``: leave the web previews this process started running.
    - ``warn``: receives the loud warning of running untrusted code unsandboxed
      (default: a Python warning).
    - ``tracing``: given instead of built from ``[telemetry]`` (a test's exporter).

    It configures the log lines from ``[telemetry]`` and, when ``[github] open_pr`` or
    ``[email]`` is set, delivers the tasks' outcomes (``pipeline/delivery.py``): after
    each ``run_until_settled`` of a task-scoped execution, else as a subscriber.

    Errors in the settings (a model that cannot be built, no sandbox, no workspaces root)
    raise ``ForgelineError``s before anything is created.
    """
    if settings.workspaces_root is None:
        raise ConfigError(
            "no workspaces root: set workspaces_root (FORGELINE_WORKSPACES_ROOT) to the "
            "directory that holds the repositories tasks work on"
        )
    workspaces = Workspaces(settings.workspaces_root)
    factory = execution or default_execution(settings)  # a bad broker setting: before anything
    if models is None:
        models = ModelRegistry.from_settings(settings) if agents else ModelRegistry({})
    try:
        if spawner is None:
            spawner = _spawner(settings, warn) if agents else LocalSpawner()
        store = open_store(settings.store_url(workspaces.root), create=create)
        await store.open()
    except BaseException:
        await models.aclose()
        raise
    configure_logging(settings.telemetry)
    services = Services(
        store=store,
        settings=settings,
        spawner=spawner,
        models=models,
        workspaces=workspaces,
        tracing=tracing or Tracing.from_config(settings.telemetry),
    )
    built = pipeline(services)
    runtime = Runtime(services, built, factory(built))
    if Delivery.wanted(settings):
        runtime.delivery = Delivery(services)
    following: asyncio.Task[None] | None = None
    done_following = asyncio.Event()
    try:
        await runtime.execution.start()
        if runtime.delivery is not None and not runtime.execution.owns_task:
            after = await runtime.delivery.start_position()
            following = asyncio.create_task(runtime.delivery.follow(after, done_following))
        yield runtime
    finally:
        try:
            await stop_following(following, done_following)
            await runtime.execution.close()
            if not keep_previews:
                await runtime._stop_previews()
        finally:
            await models.aclose()
            await asyncio.to_thread(local.stop_servers)
            await store.close()
            await asyncio.to_thread(services.tracing.shutdown)


def default_execution(settings: Settings) -> ExecutionFactory:
    """With a broker, the broker's workers do the work (``transport.BrokerExecution``);
    else the task-scoped execution of ``settings.mode``."""
    if settings.broker is not None:
        from forgeline.transport.execution import BrokerExecution, check_settings

        check_settings(settings)
        return BrokerExecution
    return for_mode(settings.mode)


def _spawner(settings: Settings, warn: Callable[[str], None] | None) -> ProcessSpawner:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnsafeSpawnerWarning)
        spawner = choose_spawner(
            require_sandbox=settings.require_sandbox, allow_unsafe=settings.unsafe_no_sandbox
        )
    for warning in caught:
        if warn is not None:
            warn(str(warning.message))
        else:
            warnings.warn(warning.message, stacklevel=3)
    return spawner
