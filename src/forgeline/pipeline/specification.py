"""The planner's first step: the request's spec, its checks on the branch, the route's facts.

``specify`` reads the spec out of the request by patterns (``forgeline.spec``); where the
task's tier says so, the model copies the examples the patterns missed (each assert kept
only when its literals are the request's own). The checks are committed as the
repository's tests (``test_spec_interface.py``, ``test_spec_examples.py``), so the tester
runs them on whatever code the task ends with, and the fixer may not change them. The
packages the request names (``with FastAPI``) are declared in ``requirements.txt`` in the
same commit, checked against the package policy first (a refused one fails the task here,
naming the package and the rule), so every candidate is checked in a venv that has them.
The ``spec.derived`` event says what the spec holds, as the user reads it, and the facts the
route follows from (``core.reactions.planned``): the tier's planning rule and review, and
whether the repository holds code already.
"""

from __future__ import annotations

from forgeline.core.events import NewEvent, PackageNeed, RunSpec
from forgeline.pipeline.architect import declare
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.selection.records import spec_derived
from forgeline.spec import Spec, derive_spec, spec_suite
from forgeline.spec.checks import EXAMPLES_FILE, INTERFACE_FILE, PATH_HOLE, command_values
from forgeline.spec.copier import copy_examples, with_copies
from forgeline.workspace.packages import PackagePolicy


async def specify(agent: StageAgent, run: StageRun) -> list[NewEvent]:
    """``spec.derived`` for the task, with its checks committed."""
    state, workspace = run.state, run.workspace
    tier, profile = run.tier
    spec = derive_spec(state.request)
    if profile.copy_examples and (spec.callables or spec.commands or spec.routes):
        copies = await copy_examples(
            agent.model("planner"), spec, timeout=agent.model_timeout("planner")
        )
        spec = with_copies(spec, [copies])
    PackagePolicy(agent.services.settings.packages).check_declared(spec.packages)
    needs = tuple(PackageNeed(name=name, reason="named in the request") for name in spec.packages)
    async with workspace.lock:
        await workspace.checkout(state.branch)
        base = await workspace.head()
        tracked = (await workspace.git("ls-files", "--", "*.py")).split()
        names = _free_names(tracked, spec)
        files, checks = spec_suite(spec, names)
        if files or needs:  # a change only where there is something to commit
            await run.begin_change("the request's spec and its checks")
        written = workspace.write_files(files.items())
        declared = declare(workspace, needs)
        what = "the request's checks" + (" and packages" if declared else "")
        changed = [*written, *declared]
        commit = (await run.commit(changed, what)) if changed else base
    derived = spec_derived(spec, checks).model_copy(
        update={
            "test_files": tuple(written),
            "commit": commit,
            "tier": tier,
            "plans": profile.plan,
            "review": profile.review,
            "existing_code": bool(tracked),
            "run": run_spec(spec),
        }
    )
    completed = await run.completed_change(commit, base, changed) if run.change else []
    return [run.event(derived), *completed]


def _free_names(tracked: list[str], spec: Spec) -> tuple[str, str]:
    """The checks' file names: the usual ones, or, where the repository has them already
    (an earlier task's), names of this spec's own."""
    if INTERFACE_FILE not in tracked and EXAMPLES_FILE not in tracked:
        return INTERFACE_FILE, EXAMPLES_FILE
    stem = f"test_spec_{spec.digest[:8]}"
    return f"{stem}_interface.py", f"{stem}_examples.py"


def run_spec(spec: Spec) -> RunSpec | None:
    """How to exercise a program built without an architect, from what the request
    states: its service on a route that needs no value, else a command line that needs
    none, else importing its modules; None when it states nothing to run."""
    if spec.server is not None and spec.server.command:
        paths = [
            r.path
            for r in spec.routes
            if r.method == "GET" and r.status in (None, 200) and not PATH_HOLE.search(r.path)
        ]
        if paths and "{port}" in " ".join(spec.server.command):
            return RunSpec(
                kind="web", command=("python", *spec.server.command), health_path=paths[0]
            )
    for command in spec.commands:
        values = command_values(command.args)
        if values == command.args and "--port" not in command.args:
            return RunSpec(kind="cli", command=("python", command.script, *command.args))
    modules = [m.module for m in spec.modules if m.importable]
    if modules:
        return RunSpec(kind="library", command=("python", "-c", f"import {', '.join(modules)}"))
    return None
