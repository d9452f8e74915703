"""Deployer: approved review.decision (or review.skipped) -> deploy.status.

A CLI or library gets its smoke command run once; a web app is started on a free
localhost port, its health URL polled, and the preview URL reported. The preview keeps
running until the runner stops it at the end of the task, or ``forgeline stop``.
"""

from __future__ import annotations

from forgeline.core.events import DeployStatus, NewEvent
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.runs.preview import smoke, start_preview
from forgeline.runs.preview_record import preview_dir
from forgeline.workspace.venv import repository_root


class DeployerAgent(StageAgent):
    stage = "deployer"

    async def run(self, run: StageRun) -> list[NewEvent]:
        state, workspace = run.state, run.workspace
        spec = state.run_spec  # the architect's, else what the request states
        settings = self.services.settings
        timeout = settings.deploy_timeout
        # The program runs with the repository's venv (what the tests ran with).
        venv = await run.venv()
        async with workspace.lock:
            await workspace.checkout(state.branch)
            if spec.kind == "web":
                # Its log and record in the repository, where a stopping process finds them.
                log_dir = preview_dir(await repository_root(workspace.path), state.task_id)
                result, process = await start_preview(
                    spec,
                    workspace.path,
                    self.services.spawner,
                    log_dir=log_dir,
                    startup_timeout=timeout,
                    venv=venv,
                )
                if process is not None:
                    self.services.previews[state.task_id] = process
            else:
                result = await smoke(
                    spec, workspace.path, self.services.spawner, timeout=timeout, venv=venv
                )
        status = DeployStatus(
            ok=result.ok,
            kind=result.kind,
            url=result.url,
            pid=result.pid,
            preview_id=result.preview_id,
            output=result.output,
            usage=result.usage,
        )
        return [run.event(status)]
