"""Whether the bubblewrap sandbox works on this machine, and if not, why not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from forgeline.sandbox.bwrap.command import SANDBOX_UID
from forgeline.sandbox.bwrap.kernfs import read_int
from forgeline.sandbox.bwrap.sandbox import SHELL, BwrapSandbox
from forgeline.sandbox.spawner import SpawnError

__all__ = ["sandbox_available"]

_PROBE_TIMEOUT_S = 20.0

_available_cache: tuple[str | None] | None = None
_available_lock = threading.Lock()


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"bubblewrap sandboxing needs Linux (this is {sys.platform})"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    max_ns = read_int(Path("/proc/sys/user/max_user_namespaces"))
    if max_ns == 0:
        return "user namespaces are disabled (sysctl user.max_user_namespaces = 0)"
    if os.getuid() != 0 and read_int(Path("/proc/sys/kernel/unprivileged_userns_clone")) == 0:
        return (
            "unprivileged user namespaces are disabled "
            "(sysctl kernel.unprivileged_userns_clone = 0)"
        )
    sandbox = BwrapSandbox(use_cgroups=False, bwrap=bwrap)
    check = f'test "$(id -u)" = {SANDBOX_UID} && test ! -w /usr && echo forgeline-sandbox-ok'
    with tempfile.TemporaryDirectory(prefix="forgeline-probe-") as tmp:
        try:
            argv, fds = sandbox.command([SHELL, "-c", check], Path(tmp))
        except SpawnError as exc:
            return str(exc)
        try:
            done = subprocess.run(
                argv,
                cwd=tmp,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT_S,
                pass_fds=fds,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap could not be run: {exc}"
        finally:
            for fd in fds:
                os.close(fd)
    if "forgeline-sandbox-ok" not in done.stdout:
        detail = done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}"
        if "sandbox-ok" not in detail and done.returncode == 0:
            detail = "the sandboxed process was root or could write /usr"
        return f"bubblewrap cannot create the sandbox here: {detail[-500:]}"
    return None


def sandbox_available(*, refresh: bool = False) -> str | None:
    """None if ``BwrapSandbox`` works on this machine, else the reason it does not.

    Checks for Linux, the ``bwrap`` program and user namespaces, then starts one real
    sandbox. The answer is cached; ``refresh`` checks again.
    """
    global _available_cache
    with _available_lock:
        if _available_cache is None or refresh:
            _available_cache = (_probe(),)
        return _available_cache[0]
