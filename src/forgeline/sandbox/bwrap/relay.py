"""The port relay for previews: host 127.0.0.1:PORT to the app on the sandbox's loopback.

The sandbox has no network of its own to listen on, so ``start`` runs the program behind
a relay (``relay_argv``) that hands forgeline connected sockets over a Unix socket pair;
``PortForward`` listens on the host side and copies bytes both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import sys
import threading
from collections.abc import Mapping

from forgeline.sandbox.bwrap.errors import SandboxError

__all__ = ["FORWARD_PORT_ENV", "PortForward", "forwarded_port", "relay_argv"]

#: ``start`` with this variable in ``env`` forwards host 127.0.0.1:$PORT into the sandbox.
FORWARD_PORT_ENV = "PORT"

# The relay a forwarded ``start`` runs in the sandbox in front of the program: it runs the
# program as its child (passing on SIGTERM/SIGINT/SIGHUP, exiting with its status) and, for
# each request on the control socket from forgeline, connects to the program's port on the
# sandbox's loopback and sends the connected socket back (SCM_RIGHTS). forgeline then talks
# to the program through that socket; nothing in the sandbox gets a way out.
_RELAY = r"""
import signal, socket, subprocess, sys, threading
ctrl = socket.socket(fileno=int(sys.argv[1]))
ctrl.set_inheritable(False)
port = int(sys.argv[2])
child = subprocess.Popen(sys.argv[3:])
def forward(signum, frame):
    child.send_signal(signum)
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, forward)
def serve():
    while True:
        try:
            if not ctrl.recv(16):
                return
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                ctrl.send(b"e")
                continue
            try:
                socket.send_fds(ctrl, [b"k"], [conn.fileno()])
            finally:
                conn.close()
        except OSError:
            return
threading.Thread(target=serve, daemon=True).start()
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
"""
_FORWARD_TIMEOUT_S = 10.0


def forwarded_port(env: Mapping[str, str] | None, variable: str | None) -> int | None:
    """The port to forward: ``variable`` in ``env`` if it is a valid port number."""
    if not variable or not env:
        return None
    value = env.get(variable, "")
    if not value.isdigit() or not 0 < int(value) < 65536:
        return None
    return int(value)


def relay_argv(control_fd: int, port: int, args: tuple[str, ...]) -> tuple[str, ...]:
    """argv that runs ``args`` behind the relay, which serves ``port`` over ``control_fd``."""
    return (sys.executable, "-I", "-S", "-c", _RELAY, str(control_fd), str(port), *args)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass


class PortForward:
    """Host 127.0.0.1:``port`` -> the sandbox's 127.0.0.1:``port``, through the relay."""

    def __init__(self, port: int, control: socket.socket) -> None:
        self.port = port
        self._control = control
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def listen(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        except OSError as exc:
            raise SandboxError(
                f"cannot forward 127.0.0.1:{self.port} into the sandbox: {exc}"
            ) from exc

    def _connect(self) -> socket.socket | None:
        """Ask the relay for a connection to the program's port (blocking; in a thread)."""
        with self._lock:
            if self._closed:
                return None
            try:
                self._control.settimeout(_FORWARD_TIMEOUT_S)
                self._control.send(b"c")
                _, fds, _, _ = socket.recv_fds(self._control, 16, 4)
            except OSError:
                return None
        conn: socket.socket | None = None
        for fd in fds:
            if conn is None and stat.S_ISSOCK(os.fstat(fd).st_mode):
                conn = socket.socket(fileno=fd)
            else:
                os.close(fd)
        return conn

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            conn = await asyncio.to_thread(self._connect)
            if conn is None:
                return
            conn.setblocking(False)
            inner_reader, inner_writer = await asyncio.open_connection(sock=conn)
            try:
                await asyncio.gather(_copy(reader, inner_writer), _copy(inner_reader, writer))
            finally:
                inner_writer.close()
        except OSError:
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
        with self._lock:
            self._control.close()
