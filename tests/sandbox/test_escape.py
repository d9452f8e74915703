"""THE ESCAPE SUITE: untrusted code tries to get out of BwrapSandbox; each test is one attempt.

Each attempt runs for real inside the sandbox and the test then checks the *host*: files,
ports, processes, mounts. A test passes only when its attempt was contained; the terminal
summary prints ``escape suite: N attempts, M contained`` (tests/sandbox/conftest.py).
Nothing leaves 127.0.0.1: the network attempts first check, inside the sandbox, that the
only interface there is the private loopback, and give up (failing the test) otherwise.
When bubblewrap cannot work here every attempt fails with the reason; none is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgeline.sandbox.bwrap import SANDBOX_UID, BwrapSandbox, ResourceLimits
from forgeline.sandbox.spawner import ProcessResult
from tests.sandbox.conftest import marker_pids, wait_no_marker

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("bwrap_ready")]

PY = sys.executable
MiB = 1024**2
LIMITS = ResourceLimits(
    memory_bytes=256 * MiB,
    pids=64,
    cpu_seconds=3,
    cpu_cores=1.0,
    tmp_bytes=16 * MiB,
    file_bytes=64 * MiB,
)

# Tries each path in argv; prints {path: "written" | "<error>"}.
TRY_WRITE = """
import json, sys
results = {}
for target in sys.argv[1:]:
    try:
        with open(target, "w") as fh:
            fh.write("pwned")
        results[target] = "written"
    except OSError as exc:
        results[target] = f"{type(exc).__name__}: {exc.strerror}"
print(json.dumps(results))
"""

# Tries to read each path in argv; prints {path: content | "<error>"}.
TRY_READ = """
import json, sys
results = {}
for target in sys.argv[1:]:
    try:
        with open(target, errors="replace") as fh:
            results[target] = "READ: " + fh.read(4096)
    except OSError as exc:
        results[target] = f"{type(exc).__name__}: {exc.strerror}"
print(json.dumps(results))
"""

# Refuses to touch the network unless the private loopback is the only interface.
ONLY_LOOPBACK = """
import json, sys
with open("/proc/net/dev") as fh:
    interfaces = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
if interfaces != ["lo"]:
    print(json.dumps({"ABORTED": f"interfaces {interfaces}: not trying the network"}))
    sys.exit(0)
"""


@pytest.fixture
def sandbox() -> BwrapSandbox:
    return BwrapSandbox(limits=LIMITS, kill_grace=0.5)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, str]:
    """A host file outside the workspace holding a random token."""
    outside = tmp_path / "outside"
    outside.mkdir()
    token = f"SECRET-{uuid.uuid4().hex}"
    path = outside / "secret.txt"
    path.write_text(token + "\n")
    return path, token


def report(result: ProcessResult) -> dict[str, str]:
    assert result.stdout.strip(), f"the attempt did not run: {result.output}"
    data: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    assert "ABORTED" not in data, data
    return data


# --------------------------------------------------------------------------- (1)


@pytest.fixture
def host_home_target() -> Iterator[Path]:
    target = Path.home() / f"forgeline-escape-{uuid.uuid4().hex}"
    yield target
    if target.exists():  # only if the escape worked: do not leave it behind
        target.unlink()


async def test_01_write_outside_the_workspace(
    sandbox: BwrapSandbox,
    workspace: Path,
    secret: tuple[Path, str],
    host_home_target: Path,
) -> None:
    secret_path, token = secret
    outside = secret_path.parent
    targets = [
        outside / "pwned.txt",  # a host temp dir next to the workspace
        secret_path,  # overwrite an existing host file
        workspace.parent / "sibling-pwned.txt",
        Path("/usr/forgeline-pwned"),
        Path("/etc/forgeline-pwned"),
        Path(f"/forgeline-pwned-{uuid.uuid4().hex}"),
        host_home_target,  # the user's home
        Path(sys.prefix) / "forgeline-pwned",  # forgeline's own venv
    ]
    result = await sandbox.run([PY, "-c", TRY_WRITE, *map(str, targets)], cwd=workspace, timeout=30)
    assert result.ok, result.output
    report(result)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert secret_path.read_text() == token + "\n"
    for target in targets:
        if target != secret_path:
            assert not target.exists(), f"the sandbox wrote {target} on the host"


# --------------------------------------------------------------------------- (2)


async def test_02_read_a_host_file(
    sandbox: BwrapSandbox,
    workspace: Path,
    secret: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret_path, token = secret
    env_token = f"ENV-SECRET-{uuid.uuid4().hex}"
    monkeypatch.setenv("FORGELINE_ESCAPE_SECRET", env_token)
    targets = [
        str(secret_path),
        os.path.relpath(secret_path, workspace),  # ../outside/secret.txt
        f"/proc/1/root{secret_path}",
        f"/proc/self/root{secret_path}",
        f"/proc/{os.getpid()}/environ",  # forgeline's pid on the host
        "/etc/shadow",
        "/proc/1/environ",
    ]
    result = await sandbox.run([PY, "-c", TRY_READ, *targets], cwd=workspace, timeout=30)
    assert result.ok, result.output
    data = report(result)
    assert token not in result.output
    assert env_token not in result.output
    for target in [*targets[:4], "/etc/shadow"]:
        assert not data[target].startswith("READ: "), (target, data[target])


# --------------------------------------------------------------------------- (3)

TRY_CONNECT_HOST = (
    ONLY_LOOPBACK
    + """
import socket
port, abstract = int(sys.argv[1]), sys.argv[2]
results = {}
for host in ("127.0.0.1", "localhost", "::1"):
    try:
        socket.create_connection((host, port), timeout=3).close()
        results[host] = "connected"
    except OSError as exc:
        results[host] = type(exc).__name__
try:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.settimeout(3)
    unix.connect("\\0" + abstract)
    results["abstract"] = "connected"
except OSError as exc:
    results["abstract"] = type(exc).__name__
print(json.dumps(results))
"""
)


async def test_03_reach_a_port_on_the_hosts_loopback(
    sandbox: BwrapSandbox, workspace: Path
) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = f"forgeline-escape-{uuid.uuid4().hex}"
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        unix.bind("\0" + abstract)
        unix.listen(8)
        unix.setblocking(False)
        port = listener.getsockname()[1]
        result = await sandbox.run(
            [PY, "-c", TRY_CONNECT_HOST, str(port), abstract], cwd=workspace, timeout=30
        )
        assert result.ok, result.output
        data = report(result)
        assert "connected" not in data.values(), data
        for sock in (listener, unix):
            with pytest.raises(BlockingIOError):
                sock.accept()  # nothing ever connected
    finally:
        listener.close()
        unix.close()


# --------------------------------------------------------------------------- (4)

TRY_OUTSIDE = (
    ONLY_LOOPBACK
    + """
import socket, time
results = {}
started = time.monotonic()
try:
    results["dns"] = repr(socket.getaddrinfo("example.com", 443))
except OSError as exc:
    results["dns"] = type(exc).__name__
results["dns_s"] = round(time.monotonic() - started, 3)
for address in ("1.1.1.1", "192.0.2.1", "2606:4700:4700::1111"):
    started = time.monotonic()
    try:
        socket.create_connection((address, 80), timeout=3).close()
        results[address] = "connected"
    except OSError as exc:
        results[address] = type(exc).__name__ + ": " + str(exc.strerror)
    results[address + "_s"] = round(time.monotonic() - started, 3)
print(json.dumps(results))
"""
)


async def test_04_resolve_and_reach_an_outside_address(
    sandbox: BwrapSandbox, workspace: Path
) -> None:
    result = await sandbox.run([PY, "-c", TRY_OUTSIDE], cwd=workspace, timeout=30)
    assert result.ok, result.output
    data = report(result)
    assert data["dns"] == "gaierror", data
    assert float(data["dns_s"]) < 5, data
    for address in ("1.1.1.1", "192.0.2.1", "2606:4700:4700::1111"):
        assert data[address] != "connected", data
        assert "unreachable" in data[address].lower(), data  # no route: fails at once
        assert float(data[address + "_s"]) < 1, data


# --------------------------------------------------------------------------- (5)

FORK_BOMB = """
import os, sys, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""


async def test_05_fork_bomb(sandbox: BwrapSandbox, workspace: Path, marker: str) -> None:
    if sandbox.limits_mechanism == "rlimit" and os.getuid() == 0:
        pytest.fail(
            "no writable pids cgroup, and RLIMIT_NPROC does not bind uid 0: a fork bomb "
            "would not be contained here, so it is not run",
            pytrace=False,
        )
    latencies: list[float] = []

    async def host_stays_responsive() -> None:
        await asyncio.sleep(1.0)
        for _ in range(3):
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.3)

    result, _ = await asyncio.gather(
        sandbox.run([PY, "-c", FORK_BOMB, marker], cwd=workspace, timeout=4),
        host_stays_responsive(),
    )
    assert not result.ok
    assert result.usage is not None
    if result.usage.mechanism != "rlimit":
        assert "pids" in result.usage.limits_hit, result.usage
        assert LIMITS.pids is not None
        if result.usage.peak_pids is not None:
            assert result.usage.peak_pids <= LIMITS.pids + 2, result.usage
    assert max(latencies) < 2.0, latencies
    assert wait_no_marker(marker) == []


# --------------------------------------------------------------------------- (6)

MEMORY_BOMB = """
chunks = []
while True:
    chunks.append(b"x" * (8 << 20))
    print(len(chunks) * 8, flush=True)
"""


async def test_06_memory_bomb(sandbox: BwrapSandbox, workspace: Path, marker: str) -> None:
    result = await sandbox.run([PY, "-c", MEMORY_BOMB, marker], cwd=workspace, timeout=60)
    assert not result.ok
    assert not result.timed_out
    assert result.usage is not None
    allocated = int(result.stdout.split()[-1]) * MiB
    assert LIMITS.memory_bytes is not None
    assert allocated <= LIMITS.memory_bytes
    if result.usage.mechanism == "rlimit":
        assert "MemoryError" in result.stderr
    else:
        assert result.exit_code in (128 + 9, -9), result  # the OOM killer's SIGKILL
        assert "memory" in result.usage.limits_hit, result.usage
        assert result.usage.peak_memory_bytes is not None
        assert result.usage.peak_memory_bytes <= LIMITS.memory_bytes
    assert wait_no_marker(marker) == []


# --------------------------------------------------------------------------- (7)


async def test_07_endless_loop(sandbox: BwrapSandbox, workspace: Path, marker: str) -> None:
    started = time.monotonic()
    result = await sandbox.run([PY, "-c", "while True: pass", marker], cwd=workspace, timeout=120)
    assert time.monotonic() - started < 20  # the CPU limit (3 s), not the timeout
    assert not result.ok
    assert not result.timed_out
    assert result.usage is not None and "cpu" in result.usage.limits_hit, result.usage
    assert wait_no_marker(marker) == []


async def test_07b_endless_sleep_hits_the_timeout(
    sandbox: BwrapSandbox, workspace: Path, marker: str
) -> None:
    code = "import time\nwhile True:\n    time.sleep(1)\n"
    started = time.monotonic()
    result = await sandbox.run([PY, "-c", code, marker], cwd=workspace, timeout=1.5)
    assert time.monotonic() - started < 6
    assert result.timed_out and not result.ok
    assert wait_no_marker(marker) == []


# --------------------------------------------------------------------------- (8)

DAEMON = """
import os, signal, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        code = "import pathlib, time\\npathlib.Path('daemon-started').write_text('up')\\n" \\
               "while True: time.sleep(1)"
        os.execv(sys.executable, [sys.executable, "-c", code, marker, "daemon"])
    os._exit(0)
deadline = time.monotonic() + 10
while not os.path.exists("daemon-started") and time.monotonic() < deadline:
    time.sleep(0.05)
print("parent exits; daemon up:", os.path.exists("daemon-started"), flush=True)
"""


async def test_08_setsid_double_fork_daemon(
    sandbox: BwrapSandbox, workspace: Path, marker: str
) -> None:
    result = await sandbox.run([PY, "-c", DAEMON, marker], cwd=workspace, timeout=30)
    assert result.ok, result.output
    assert "daemon up: True" in result.stdout
    assert (workspace / "daemon-started").read_text() == "up"
    assert result.duration_s < 15  # the run ended with its main process
    assert wait_no_marker(marker) == [], "the daemon outlived the sandbox"


async def test_08b_daemon_of_a_started_process_dies_on_stop(
    sandbox: BwrapSandbox, workspace: Path, tmp_path: Path, marker: str
) -> None:
    code = DAEMON + "import time\ntime.sleep(60)\n"
    process = await sandbox.start(
        [PY, "-c", code, marker], cwd=workspace, log_path=tmp_path / "daemon.log"
    )
    for _ in range(300):
        if (workspace / "daemon-started").exists():
            break
        await asyncio.sleep(0.05)
    assert len(marker_pids(marker)) >= 2
    await process.stop(1)
    assert wait_no_marker(marker) == [], "the daemon outlived the sandbox"


# --------------------------------------------------------------------------- (9)


async def test_09_symlink_from_the_workspace_to_a_host_file(
    sandbox: BwrapSandbox, workspace: Path, secret: tuple[Path, str]
) -> None:
    secret_path, token = secret
    (workspace / "abs-link").symlink_to(secret_path)
    (workspace / "rel-link").symlink_to(os.path.relpath(secret_path, workspace))
    (workspace / "dir-link").symlink_to(secret_path.parent)
    (workspace / "shadow-link").symlink_to("/etc/shadow")
    code = (
        "import os, sys\n"
        "os.symlink(sys.argv[1], 'made-inside')\n"
        "sys.argv[1:] = ['abs-link', 'rel-link', 'dir-link/secret.txt', 'shadow-link',\n"
        "                'made-inside']\n" + TRY_READ
    )
    result = await sandbox.run([PY, "-c", code, str(secret_path)], cwd=workspace, timeout=30)
    assert result.ok, result.output
    data = report(result)
    assert token not in result.output
    for name, outcome in data.items():
        assert not outcome.startswith("READ: "), (name, outcome)
    assert secret_path.read_text() == token + "\n"


# --------------------------------------------------------------------------- (10)

REMOUNT = """
import json, os, subprocess
results = {"uid": os.getuid(), "euid": os.geteuid()}
for name, argv in {
    "remount_usr": ["mount", "-o", "remount,rw", "/usr"],
    "remount_root": ["mount", "-o", "remount,rw", "/"],
    "tmpfs_over_usr": ["mount", "-t", "tmpfs", "none", "/usr"],
    "bind_root": ["mount", "--bind", "/", "/tmp"],
    "new_userns": ["unshare", "-Urm", "sh", "-c", "mount -o remount,rw /usr && echo REMOUNTED"],
}.items():
    done = subprocess.run(argv, capture_output=True, text=True)
    results[name] = done.returncode
    results[name + "_out"] = (done.stdout + done.stderr).strip()[-200:]
try:
    os.setuid(0)
    results["setuid0"] = "became root"
except OSError as exc:
    results["setuid0"] = type(exc).__name__
try:
    with open("/usr/forgeline-pwned", "w") as fh:
        fh.write("pwned")
    results["write_usr"] = "written"
except OSError as exc:
    results["write_usr"] = f"{type(exc).__name__}: {exc.strerror}"
print(json.dumps(results))
"""


def usr_mount_lines() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if line.split()[4] in ("/", "/usr")]


async def test_10_remount_usr_read_write(sandbox: BwrapSandbox, workspace: Path) -> None:
    before = usr_mount_lines()
    result = await sandbox.run([PY, "-c", REMOUNT], cwd=workspace, timeout=30)
    assert result.ok, result.output
    data = report(result)
    assert data["uid"] == data["euid"] == SANDBOX_UID != 0
    for name in ("remount_usr", "remount_root", "tmpfs_over_usr", "bind_root", "new_userns"):
        assert data[name] != 0, (name, data[name + "_out"])
    assert "REMOUNTED" not in data["new_userns_out"]
    assert data["setuid0"] != "became root"  # EINVAL: uid 0 does not even exist in there
    assert data["write_usr"] != "written"
    assert not Path("/usr/forgeline-pwned").exists()
    assert usr_mount_lines() == before


# --------------------------------------------------------------------------- extras


async def test_11_signal_host_processes(sandbox: BwrapSandbox, workspace: Path) -> None:
    victim = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        code = (
            "import json, os, signal, subprocess, sys\n"
            "results = {}\n"
            "try:\n"
            "    os.kill(int(sys.argv[1]), signal.SIGKILL); results['direct'] = 'sent'\n"
            "except OSError as exc:\n"
            "    results['direct'] = type(exc).__name__\n"
            "print(json.dumps(results), flush=True)\n"
            "# Everything it may signal: in its pid namespace that is only the sandbox itself.\n"
            "subprocess.run(['sh', '-c', 'kill -9 -1'])\n"
        )
        result = await sandbox.run([PY, "-c", code, str(victim.pid)], cwd=workspace, timeout=30)
        await asyncio.sleep(0.2)
        assert victim.returncode is None, "the sandbox killed a host process"
        assert report(result)["direct"] == "ProcessLookupError"
    finally:
        victim.kill()
        await victim.wait()


async def test_12_fill_the_private_tmp(sandbox: BwrapSandbox, workspace: Path) -> None:
    code = (
        "import json\n"
        "written = 0\n"
        "try:\n"
        "    with open('/tmp/fill', 'wb') as fh:\n"
        "        while written < 256 << 20:\n"
        "            fh.write(b'x' * (1 << 20)); fh.flush(); written += 1 << 20\n"
        "    error = None\n"
        "except OSError as exc:\n"
        "    error = type(exc).__name__ + ': ' + str(exc.strerror)\n"
        "print(json.dumps({'written': str(written), 'error': str(error)}))\n"
    )
    result = await sandbox.run([PY, "-c", code], cwd=workspace, timeout=30)
    data = report(result)
    assert LIMITS.tmp_bytes is not None
    assert int(data["written"]) <= LIMITS.tmp_bytes
    assert "No space left" in data["error"], data
    assert not Path("/tmp/fill").exists()


PROC_KNOBS = """
import json, os, stat
results = {"writable": [], "root_only_readable": []}
for root, dirs, files in os.walk("/proc"):
    if root == "/proc":
        dirs[:] = [d for d in dirs if not d.isdigit() and d not in ("self", "thread-self")]
    for name in files:
        path = os.path.join(root, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        if os.access(path, os.W_OK):
            results["writable"].append(path)
        if not info.st_mode & stat.S_IROTH:
            try:
                with open(path, "rb") as fh:
                    if fh.read(64):
                        results["root_only_readable"].append(path)
            except OSError:
                pass
for knob in ("/proc/sys/vm/swappiness", "/proc/sys/kernel/core_pattern"):
    try:
        with open(knob) as fh:
            value = fh.read()
        with open(knob, "w") as fh:  # the same value: harmless even if it got through
            fh.write(value)
        results[knob] = "written"
    except OSError as exc:
        results[knob] = f"{type(exc).__name__}: {exc.strerror}"
print(json.dumps({key: json.dumps(value) for key, value in results.items()}))
"""


async def test_13_kernel_knobs_in_proc(sandbox: BwrapSandbox, workspace: Path) -> None:
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    result = await sandbox.run([PY, "-c", PROC_KNOBS], cwd=workspace, timeout=60)
    assert result.ok, result.output
    data = {key: json.loads(value) for key, value in report(result).items()}
    assert data["writable"] == [], data["writable"]
    assert data["root_only_readable"] == [], data["root_only_readable"]
    for knob in ("/proc/sys/vm/swappiness", "/proc/sys/kernel/core_pattern"):
        assert data[knob] != "written", (knob, data[knob])
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern


PLANT_GIT_HOOK = """
import json, os
results = {}
for target in (".git/hooks/pre-commit", ".git/config"):
    try:
        with open(target, "a") as fh:
            fh.write("\\n# planted\\n")
        results[target] = "written"
    except OSError as exc:
        results[target] = f"{type(exc).__name__}: {exc.strerror}"
try:
    os.rename(".git", "git-moved")
    os.mkdir(".git")
    results["replace"] = "replaced"
except OSError as exc:
    results["replace"] = f"{type(exc).__name__}: {exc.strerror}"
print(json.dumps(results))
"""


async def test_14_plant_a_git_hook_for_the_host(sandbox: BwrapSandbox, workspace: Path) -> None:
    init = await asyncio.create_subprocess_exec(
        "git", "init", "-q", str(workspace), stdout=asyncio.subprocess.DEVNULL
    )
    assert await init.wait() == 0
    config_before = (workspace / ".git" / "config").read_text()
    result = await sandbox.run([PY, "-c", PLANT_GIT_HOOK], cwd=workspace, timeout=30)
    assert result.ok, result.output
    data = report(result)
    assert "written" not in data.values() and data["replace"] != "replaced", data
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()
    assert (workspace / ".git" / "config").read_text() == config_before
    assert not (workspace / "git-moved").exists()
