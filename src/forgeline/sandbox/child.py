"""The one run loop both spawners share: output tails, timeout, kill, cancellation.

A backend starts its child (the launcher, or bubblewrap) with stdout and stderr on
pipes and hands ``run_child`` a ``Child``: the handle that knows how to wait for it to be
ready, watch its limits, terminate and kill all of it, and say what it used. The loop does
the rest the same way for every backend:

* both pipes are read to their end into ``TailBuffer``s (the last ``max_output``
  characters of each are kept);
* the run ends when the child exits, a limit fires (the sandbox's CPU watch) or
  ``timeout`` passes (``started`` + ``timeout``); then whatever is left of it is
  terminated: SIGTERM, ``kill_grace``, SIGKILL (at once for a limit);
* any exception while it runs, ``asyncio.CancelledError`` included, kills it all at once,
  waits up to ``DRAIN_S`` for it to be reaped, and goes on up: cancelling the task that
  awaits a run stops its processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable
from typing import Protocol, TypedDict

from forgeline.sandbox.spawner import ProcessResult, ResourceUsage, SpawnError

__all__ = ["DRAIN_S", "Child", "OutputFields", "TailBuffer", "output_fields", "pump", "run_child"]

#: After a child is killed, how long to wait for it to be reaped and for its output pipes
#: to reach EOF (a process that escaped could hold them open forever).
DRAIN_S = 2.0
_READ_CHUNK = 64 * 1024


class TailBuffer:
    """Keeps the last bytes of a stream, enough for ``max_chars`` characters of UTF-8."""

    def __init__(self, max_chars: int) -> None:
        self._max_chars = max_chars
        self._keep = max_chars * 4 + 4
        self._buf = bytearray()
        self._dropped = False

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > 2 * self._keep:
            del self._buf[: len(self._buf) - self._keep]
            self._dropped = True

    def text(self) -> tuple[str, bool]:
        raw = bytes(self._buf)
        dropped = self._dropped
        if len(raw) > self._keep:
            raw = raw[len(raw) - self._keep :]
            dropped = True
        text = raw.decode("utf-8", errors="replace")
        if dropped or len(text) > self._max_chars:
            kept = text[len(text) - self._max_chars :] if self._max_chars else ""
            marker = "[... earlier output truncated ...]\n"
            return marker + kept, True
        return text, False


class OutputFields(TypedDict):
    """``ProcessResult``'s output fields, as ``output_fields`` gives them."""

    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool


def output_fields(out: TailBuffer, err: TailBuffer) -> OutputFields:
    """The bounded stdout and stderr of a run (from its two buffers), and whether each was
    cut: ``ProcessResult(..., **output_fields(out, err))``."""
    stdout, stdout_cut = out.text()
    stderr, stderr_cut = err.text()
    return OutputFields(
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=stdout_cut,
        stderr_truncated=stderr_cut,
    )


async def pump(stream: asyncio.StreamReader | None, sink: TailBuffer) -> None:
    """Read ``stream`` (if any) to its end into ``sink``."""
    if stream is None:
        return
    while True:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            return
        sink.feed(chunk)


class Child(Protocol):
    """A started child as the run loop sees it (``popen`` has stdout and stderr pipes)."""

    popen: subprocess.Popen[bytes]
    started: float
    """``time.monotonic()`` when it was started; the timeout counts from here."""
    exited: asyncio.Future[None]
    """Done once the child has been reaped (on the event loop)."""

    @property
    def exit_code(self) -> int | None: ...

    async def ready(self) -> bool:
        """Whether it really started (the sandbox came up); False: it did not."""
        ...

    def start_error(self, program: str, reason: str) -> SpawnError:
        """The error for a child that was not ``ready``: ``reason`` is its stderr."""
        ...

    async def watch(self) -> None:
        """Return once the run went over a limit (and note which); a child without
        limits to watch never returns."""
        ...

    async def terminate(self, grace: float) -> None:
        """Whatever is left of it: SIGTERM, ``grace`` seconds, then SIGKILL; reap it."""
        ...

    def kill_now(self) -> None:
        """SIGKILL all of it, without waiting (safe in a cancellation path)."""
        ...

    def usage(self) -> ResourceUsage: ...


def _reader_protocol(reader: asyncio.StreamReader) -> Callable[[], asyncio.Protocol]:
    return lambda: asyncio.StreamReaderProtocol(reader)


async def run_child(
    child: Child,
    args: tuple[str, ...],
    *,
    timeout: float,
    max_output: int,
    kill_grace: float,
) -> ProcessResult:
    """Collect ``child``'s output until it exits, hits a limit or ``timeout``; then make
    sure nothing of it is left (see the module doc)."""
    loop = asyncio.get_running_loop()
    popen = child.popen
    out, err = TailBuffer(max_output), TailBuffer(max_output)
    transports: list[asyncio.BaseTransport] = []
    readers: list[asyncio.Task[None]] = []
    watcher: asyncio.Task[None] | None = None
    timed_out = False
    try:
        for pipe, sink in ((popen.stdout, out), (popen.stderr, err)):
            reader = asyncio.StreamReader(loop=loop)
            transport, _ = await loop.connect_read_pipe(_reader_protocol(reader), pipe)
            transports.append(transport)
            readers.append(asyncio.create_task(pump(reader, sink)))
        if not await child.ready():
            await child.terminate(0)
            await asyncio.wait(readers, timeout=DRAIN_S)
            raise child.start_error(args[0], err.text()[0].strip())
        watcher = asyncio.create_task(child.watch())
        remaining = child.started + timeout - time.monotonic()
        done, _ = await asyncio.wait(
            {child.exited, watcher},
            timeout=max(remaining, 0),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if child.exited.done():
            await child.terminate(kill_grace)  # whatever it left running
        elif watcher in done:
            await child.terminate(0)
        else:
            timed_out = True
            await child.terminate(kill_grace)
        _, pending = await asyncio.wait(readers, timeout=DRAIN_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    except BaseException:
        child.kill_now()
        for task in readers:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.exited), DRAIN_S)
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        # Closing the transports closes the pipes, even ones a process that escaped still
        # holds open.
        for each in transports:
            each.close()
        for stream in (popen.stdout, popen.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    usage = child.usage()
    return ProcessResult(
        argv=args,
        exit_code=child.exit_code,
        timed_out=timed_out,
        duration_s=usage.wall_s,
        usage=usage,
        **output_fields(out, err),
    )
