"""Run untrusted programs inside a bubblewrap sandbox: the isolating ``ProcessSpawner``.

``BwrapSandbox`` has the same ``run``/``start`` interface as ``LocalSpawner`` and shares its
checks (argv, the environment allowlist) and its run loop (``sandbox.child``: bounded
output, timeout, kill, cancellation), but every child runs in a ``bwrap`` sandbox:

* **Namespaces** (``--unshare-all``): its own mount, pid, network (only a private loopback),
  IPC, UTS and cgroup namespaces, and a user namespace (``--unshare-user``) in which it is
  ``SANDBOX_UID``/``SANDBOX_GID`` with no capabilities (``--cap-drop ALL``, no-new-privs)
  and may not make further user namespaces (``--disable-userns``).
* **File system**: a fresh tmpfs root made read-only after setup. ``/usr`` (and ``/bin``,
  ``/lib*`` as on the host), a few harmless ``/etc`` files and the Python installation
  (``sys.prefix``/``sys.base_prefix``) are bound read-only; ``/proc`` is the sandbox's own
  (with ``/proc/sys`` and other kernel knobs read-only, root-only files masked), ``/dev`` a
  minimal private one, ``/tmp`` a private size-capped tmpfs. The workspace (``cwd``) is the
  only writable host path (its ``.git`` read-only), plus what the caller adds
  (``extra_rw``; a run's ``Mounts``: its venv, read-only unless an install writes it, and
  binds) and forgeline's own ``forgeline-*`` scratch directories named in argv (the
  pytest runner's JUnit report directory).
* **Network**: none. ``start`` with ``PORT`` in its environment (a web preview) forwards
  host 127.0.0.1:PORT to the app on the sandbox's own loopback through a relay.
* **Processes**: an init is pid 1 of the sandbox's pid namespace (bwrap's own, or without
  cgroups forgeline's launcher, which reports the command's rusage); when it dies the
  kernel kills everything inside, so daemons (``setsid``, double forks) die with the run.
  ``--die-with-parent`` ties the sandbox to forgeline itself.
* **Limits**: memory, pids and (total) CPU time through a per-run cgroup when cgroups are
  writable (v1 controllers or a delegated v2 subtree), else rlimits (``RLIMIT_AS``,
  ``RLIMIT_NPROC``); ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` and ``RLIMIT_CORE`` always.

**Identity.** bubblewrap maps the one uid inside (``SANDBOX_UID``) to the uid that runs
forgeline outside. So files the sandbox writes into the workspace belong on the host to
forgeline's user, and a workspace forgeline owns (root's, say) stays writable without chown
or ACLs, while inside the process is not root and holds no capability: it
cannot remount, mount or change ownership, and the host's root-owned files outside its
binds do not exist for it. Host files under a *bound* path owned by forgeline's user are
as readable to it as to forgeline (hence only harmless ``/etc`` files are bound, never
``/etc/ssl/private``); kernel checks on the uid rather than on capabilities would treat it
as root (hence the read-only ``/proc/sys``); and when forgeline runs as root the kernel
does not apply ``RLIMIT_NPROC`` to it, so the pids limit needs cgroups there. Running
forgeline as an unprivileged user avoids all of that. See docs/security.md.

``sandbox_available()`` says whether all this works on this machine (None) or why not.

The package's modules, one concern each: ``sandbox`` (``BwrapSandbox``), ``instance`` (one
started sandbox and its ``BwrapProcess``), ``command`` (bwrap's argv and mounts),
``cgroups``, ``limits``, ``relay`` (port forwarding), ``availability``, and the small
``kernfs``, ``pidns`` and ``errors``.
"""

from __future__ import annotations

from forgeline.sandbox.bwrap.availability import sandbox_available
from forgeline.sandbox.bwrap.cgroups import CgroupSupport, detect_cgroups
from forgeline.sandbox.bwrap.command import SANDBOX_GID, SANDBOX_UID, TEMP_ARG_PREFIX
from forgeline.sandbox.bwrap.errors import SandboxError
from forgeline.sandbox.bwrap.instance import BwrapProcess
from forgeline.sandbox.bwrap.limits import Mechanism, ResourceLimits, ResourceUsage
from forgeline.sandbox.bwrap.relay import FORWARD_PORT_ENV
from forgeline.sandbox.bwrap.sandbox import BwrapSandbox

__all__ = [
    "FORWARD_PORT_ENV",
    "SANDBOX_GID",
    "SANDBOX_UID",
    "TEMP_ARG_PREFIX",
    "BwrapProcess",
    "BwrapSandbox",
    "CgroupSupport",
    "Mechanism",
    "ResourceLimits",
    "ResourceUsage",
    "SandboxError",
    "detect_cgroups",
    "sandbox_available",
]
