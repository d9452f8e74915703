"""Architect: plan.created -> architecture.proposed, committing an ADR under docs/adr/.

When the design needs packages from PyPI, the architect names them (each with a reason),
and they are checked against the package policy at once: a package the policy refuses
fails the task here, naming the package and the rule, before any code is written. The
packages are then declared where the project declares its packages: ``requirements.txt``
gets a line for each one it does not name yet (made when missing), committed with the
ADR, so the tests, the preview and the patch engine's checks have them installed whatever
the coder writes (``workspace.sync``).
"""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic_ai import ModelRetry

from forgeline.core.events import ArchitectureProposed, NewEvent, PackageNeed
from forgeline.errors import WorkspaceError
from forgeline.llm.outputs import ArchitectureOutput
from forgeline.pipeline import prompts
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.workspace.declared import PackageError, read_declaration, requirement
from forgeline.workspace.git import GitWorkspace, confined_path
from forgeline.workspace.packages import PackagePolicy

REQUIREMENTS = "requirements.txt"


def adr_name(existing: list[str], title: str) -> str:
    numbers = [int(m.group(1)) for name in existing if (m := re.match(r"(\d{4})-", name))]
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50] or "design"
    return f"docs/adr/{max(numbers, default=0) + 1:04d}-{slug}.md"


def requirements_text(current: str, packages: tuple[PackageNeed, ...], declared: set[str]) -> str:
    """``requirements.txt`` (now ``current``) with a line for each of ``packages`` whose
    name is not in ``declared`` yet, its reason as a comment."""
    lines = [
        f"{p.name}  # {' '.join(p.reason.split())}".rstrip(" #")
        for p in packages
        if canonicalize_name(Requirement(p.name).name) not in declared
    ]
    if not lines:
        return current
    head = current if not current or current.endswith("\n") else current + "\n"
    if not current:
        head = "# Packages from PyPI this project needs, one requirement a line.\n"
    return head + "\n".join(lines) + "\n"


class ArchitectAgent(StageAgent):
    stage = "architect"

    async def run(self, run: StageRun) -> list[NewEvent]:
        state, workspace = run.state, run.workspace
        await run.begin_change("an architecture decision record")
        agent = self.model_agent("architect", ArchitectureOutput, prompts.ARCHITECT)

        def check(design: ArchitectureOutput) -> ArchitectureOutput:
            try:
                for spec in design.files:
                    confined_path(workspace.path, spec.path)
            except WorkspaceError as exc:
                raise ModelRetry(f"the design names a bad file: {exc}") from exc
            if design.run.kind == "web" and not any("{port}" in a for a in design.run.command):
                raise ModelRetry('a web run command must contain "{port}" where the port goes')
            try:
                packages = tuple(
                    p.model_copy(update={"name": requirement(p.name, "packages")})
                    for p in design.packages
                )
            except PackageError as exc:
                raise ModelRetry(f"{exc}; name packages by their PyPI names") from exc
            return design.model_copy(update={"packages": packages})

        agent.output_validator(check)
        design: ArchitectureOutput = (await agent.run(prompts.task_context(state))).output
        # A package outside the policy fails the task now, naming it and the rule.
        names = [canonicalize_name(Requirement(p.name).name) for p in design.packages]
        PackagePolicy(self.services.settings.packages).check_declared(names)
        async with workspace.lock:
            await workspace.checkout(state.branch)
            adr_dir = workspace.path / "docs" / "adr"
            path = adr_name(sorted(p.name for p in adr_dir.glob("*.md")), state.plan_summary)
            files = workspace.write_files(
                [(path, adr_body(state.plan_summary or state.request, design))]
            )
            files += declare(workspace, design.packages)
            commit = await run.commit(files, f"architecture decision record {path}")
        proposed = ArchitectureProposed(
            summary=design.summary,
            adr_path=path,
            files=design.files,
            run=design.run,
            commit=commit,
            packages=design.packages,
        )
        return [run.event(proposed), *await run.completed_change(commit, state.head, files)]


def adr_body(title: str, design: ArchitectureOutput) -> str:
    body = f"# {title}\n\nStatus: accepted\n\n## Summary\n\n{design.summary}\n\n{design.decision}\n"
    if design.packages:
        body += "\n## Packages\n\n" + "".join(
            f"- `{p.name}`: {' '.join(p.reason.split()) or 'needed by the design'}\n"
            for p in design.packages
        )
    return body


def declare(workspace: GitWorkspace, packages: tuple[PackageNeed, ...]) -> list[str]:
    """Add ``packages`` the worktree does not declare yet to its ``requirements.txt``; the
    files written."""
    if not packages:
        return []
    try:
        declared = set(read_declaration(workspace.path).names)
    except PackageError:
        declared = set()  # an unreadable declaration: the sync will say why
    target = workspace.path / REQUIREMENTS
    current = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else ""
    text = requirements_text(current, packages, declared)
    return workspace.write_files([(REQUIREMENTS, text)]) if text != current else []
