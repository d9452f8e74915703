"""bubblewrap's command line for one run: its namespaces and what it mounts where.

A fresh tmpfs root, made read-only after setup, with ``/usr`` (and ``/bin``, ``/lib*``),
a few harmless ``/etc`` files and the Python installation bound read-only; the sandbox's
own ``/proc`` with its kernel knobs read-only and root-only files masked; a minimal
``/dev``; a private ``/tmp``. The workspace is bound read-write, its ``.git`` read-only;
the caller's binds and forgeline's ``forgeline-*`` scratch directories named in argv come
on top.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from forgeline.sandbox.bwrap.errors import SandboxError
from forgeline.sandbox.spawner import Bind

__all__ = [
    "SANDBOX_GID",
    "SANDBOX_UID",
    "TEMP_ARG_PREFIX",
    "bwrap_command",
    "bwrap_features",
    "checked_workspace",
]

#: The uid and gid the sandboxed program has inside its user namespace (not 0, not the
#: kernel's overflow id 65534, so ``ls -l`` inside tells its own files from unmapped ones).
SANDBOX_UID = 1000
SANDBOX_GID = 1000

#: Directories directly under the system temp dir whose names start with this are
#: forgeline's own scratch directories; argv paths inside them are bound read-write.
TEMP_ARG_PREFIX = "forgeline-"

_ETC_FILES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "ssl/certs",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "protocols",
    "services",
)
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The sandboxed uid is forgeline's uid on the host (root, when forgeline runs as root), and
# some kernel checks look at that uid rather than at capabilities: the sysctl files in
# /proc/sys (core_pattern!) and a few root-only /proc files would be writable or readable.
# So these are made read-only, and those masked with /dev/null or an empty tmpfs.
_PROC_READ_ONLY = (
    "sys",
    "sysrq-trigger",
    "irq",
    "bus",
    "fs",
    "pressure",
    "mtrr",
    "acpi",
    "scsi",
    "driver",
)
_PROC_MASKED = (
    "kcore",
    "kmsg",
    "kallsyms",
    "slabinfo",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "timer_list",
    "sched_debug",
    "vmallocinfo",
    "pagetypeinfo",
    "iomem",
    "ioports",
    "keys",
    "key-users",
    "latency_stats",
    "tty/driver",
)
# Workspaces that are (or sit inside) these would expose or shadow the system.
_FORBIDDEN_WORKSPACES = ("/usr", "/etc", "/proc", "/sys", "/dev", "/boot", "/bin", "/sbin")


def bwrap_features(bwrap: str) -> frozenset[str]:
    """The options this bubblewrap has of those that are used when present."""
    try:
        done = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    text = done.stdout + done.stderr
    return frozenset(
        option for option in ("--disable-userns", "--size", "--perms") if option in text
    )


def _root_only_files(top: Path, *, skip: Iterable[str] = ()) -> list[Path]:
    """Regular files under ``top`` that others may not read (only root may)."""
    found: list[Path] = []
    skipped = set(skip)
    for root, dirs, files in os.walk(top):
        if Path(root) == top:
            dirs[:] = [d for d in dirs if d not in skipped]
        for name in files:
            path = Path(root) / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH:
                    found.append(path)
    return found


@functools.cache
def _proc_masks() -> tuple[tuple[Path, tuple[str, ...]], ...]:
    """bwrap options that cover the sensitive parts of the sandbox's /proc (see above)."""
    ops: list[tuple[Path, tuple[str, ...]]] = []
    for name in _PROC_READ_ONLY:
        path = Path("/proc") / name
        if path.exists():
            ops.append((path, ("--ro-bind", str(path), str(path))))
    masked = [Path("/proc") / name for name in _PROC_MASKED]
    # Root-only sysctls (cad_pid, usermodehelper, mmap_rnd_bits, ...) and top-level files;
    # /proc/sys/net differs per network namespace, so only its one known such file.
    masked += _root_only_files(Path("/proc/sys"), skip=["net"])
    masked.append(Path("/proc/sys/net/ipv4/tcp_fastopen_key"))
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() or entry.name in ("self", "thread-self"):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH:
                    masked.append(Path(entry.path))
    seen: set[Path] = set()
    for path in masked:
        if path in seen:
            continue
        seen.add(path)
        if path.is_dir():
            ops.append((path, ("--tmpfs", str(path))))
        elif path.exists():
            ops.append((path, ("--ro-bind", "/dev/null", str(path))))
    return tuple(ops)


def _python_prefixes() -> list[Path]:
    seen: list[Path] = []
    for raw in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        for path in (Path(raw).absolute(), Path(raw).resolve()):
            if path == Path("/") or path.is_relative_to("/usr") or path in seen:
                continue
            if path.is_dir():
                seen.append(path)
    return seen


def _pipe_with(data: bytes) -> int:
    """The read end of a pipe that holds ``data`` (small: it must fit the pipe buffer)."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


def _temp_dirs(args: Sequence[str], prefix: str | None) -> list[Path]:
    """forgeline's scratch directories named in ``args``: directories directly under the
    system temp dir, ours, whose names start with ``prefix`` (None: none)."""
    if not prefix:
        return []
    tmp = Path(tempfile.gettempdir()).resolve()
    found: list[Path] = []
    for arg in args:
        value = arg.partition("=")[2] if arg.startswith("-") else arg
        if not value.startswith("/"):
            continue
        path = Path(os.path.normpath(value))
        if not path.is_relative_to(tmp) or path == tmp:
            continue
        top = tmp / path.relative_to(tmp).parts[0]
        if not top.name.startswith(prefix) or top in found:
            continue
        with contextlib.suppress(OSError):
            info = top.lstat()
            if top.is_dir() and not top.is_symlink() and info.st_uid == os.getuid():
                found.append(top)
    return found


def checked_workspace(cwd: Path) -> Path:
    """``cwd`` resolved, unless it is (or sits inside) a system directory: SandboxError."""
    workspace = cwd.resolve()
    for forbidden in ("/", *_FORBIDDEN_WORKSPACES):
        if workspace == Path(forbidden) or (
            forbidden != "/" and workspace.is_relative_to(forbidden)
        ):
            raise SandboxError(f"refusing to use {workspace} as a sandbox workspace")
    return workspace


def bwrap_command(
    bwrap: str,
    features: frozenset[str],
    args: Sequence[str],
    cwd: Path,
    workspace: Path,
    binds: Sequence[Bind],
    *,
    tmp_bytes: int | None,
    protect_git: bool,
    temp_arg_prefix: str | None,
    info_fd: int | None,
    as_pid_1: bool = False,
) -> tuple[list[str], list[int]]:
    """bwrap's argv for running ``args`` in ``cwd`` (whose ``checked_workspace`` is
    ``workspace``), and the fds it must inherit (the caller closes them once bwrap has
    started). ``binds`` come after the workspace and the scratch directories in argv.
    ``as_pid_1``: ``args`` is the sandbox's init (pid 1, reaping orphans) instead of
    bubblewrap's own."""
    ops = _system_mounts(features, tmp_bytes)
    fds: list[int] = []
    try:
        for name, text in _etc_data().items():
            fd = _pipe_with(text.encode())
            fds.append(fd)
            ops.append((Path("/etc") / name, ["--ro-bind-data", str(fd), f"/etc/{name}"]))

        def bind(source: Path, dest: Path, writable: bool) -> None:
            if not source.exists():
                raise SandboxError(f"cannot bind {source} into the sandbox: it does not exist")
            option = "--bind" if writable else "--ro-bind"
            ops.append((dest, [option, str(source), str(dest)]))

        for prefix in _python_prefixes():
            bind(prefix, prefix, False)
        bind(workspace, workspace, True)
        if cwd.absolute() != workspace:
            bind(workspace, cwd.absolute(), True)
        if protect_git:
            # forgeline runs git on the host in this workspace afterwards: hooks or a
            # config planted in .git would run there, outside the sandbox. (A symlink
            # is not followed: it is the sandbox's own doing and stays as it is.)
            for dest in {workspace, cwd.absolute()}:
                git = dest / ".git"
                with contextlib.suppress(OSError):
                    info = (workspace / ".git").lstat()
                    if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                        ops.append((git, ["--ro-bind", str(workspace / ".git"), str(git)]))
        for path in _temp_dirs(args, temp_arg_prefix):
            bind(path, path, True)
        for extra in binds:
            dest = (extra.dest or extra.source).absolute()
            bind(extra.source.resolve(), dest, extra.writable)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    ops.sort(key=lambda op: len(op[0].parts))  # stable: same depth keeps its order

    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if "--disable-userns" in features:
        argv.append("--disable-userns")
    if as_pid_1:
        argv.append("--as-pid-1")
    for _, options in ops:
        argv += options
    argv += ["--remount-ro", "/", "--chdir", str(cwd.absolute())]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv += ["--", *args]
    return argv, fds


def _system_mounts(features: frozenset[str], tmp_bytes: int | None) -> list[tuple[Path, list[str]]]:
    """(destination, options) for the system parts: /usr, /proc, /dev, /tmp, /etc. (The
    caller sorts all of them, mounted parents first, so a deeper bind is never hidden.)"""
    ops: list[tuple[Path, list[str]]] = [(Path("/usr"), ["--ro-bind", "/usr", "/usr"])]
    for name in _TOP_LEVEL:
        path = Path("/") / name
        if path.is_symlink():
            ops.append((path, ["--symlink", os.readlink(path), str(path)]))
        elif path.is_dir():
            ops.append((path, ["--ro-bind", str(path), str(path)]))
    ops += [
        (Path("/proc"), ["--proc", "/proc"]),
        (Path("/dev"), ["--dev", "/dev"]),
    ]
    ops += [(path, list(options)) for path, options in _proc_masks()]
    tmpfs = ["--tmpfs", "/tmp"]
    if tmp_bytes is not None and "--size" in features:
        tmpfs = ["--size", str(tmp_bytes), *tmpfs]
    if "--perms" in features:
        tmpfs = ["--perms", "1777", *tmpfs]
    ops.append((Path("/tmp"), tmpfs))
    for name in _ETC_FILES:
        path = Path("/etc") / name
        ops.append((path, ["--ro-bind-try", str(path), str(path)]))
    for path in sorted(Path("/etc").glob("python3*")):
        ops.append((path, ["--ro-bind-try", str(path), str(path)]))
    return ops


def _etc_data() -> dict[str, str]:
    uid, gid = SANDBOX_UID, SANDBOX_GID
    return {
        "passwd": (
            f"sandbox:x:{uid}:{gid}:forgeline sandbox:/tmp:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"sandbox:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "hostname": "sandbox\n",
    }
