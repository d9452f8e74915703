"""Deployer: approved review.decision -> deploy.status.

A CLI or library gets its smoke command run once; a web app is started on a free
localhost port, its health URL polled, and the preview URL reported. The preview keeps
running until the runner stops it at the end of the task, or ``forgeline stop``. Both run
in the sandbox with the task's venv, synced to the packages the project declares.

With ``[deploy] mode = "compose_only"`` the deployer also writes and commits deploy files
for the app (``runs.containers``: a Dockerfile with the packages the tests ran with, a
compose file with the health check); with ``"docker_in_docker"`` it runs those with the
Docker engine instead of the sandbox, and fails saying so when none is configured.
"""

from __future__ import annotations

from forgeline.core.events import DeployStatus, NewEvent, RunSpec
from forgeline.pipeline.base import StageAgent, StageRun
from forgeline.runs.containers import compose_up, deploy_files, docker_engine
from forgeline.runs.preview import DeployResult, smoke, start_preview
from forgeline.runs.preview_record import preview_dir
from forgeline.workspace.sync import synced_packages
from forgeline.workspace.venv import repository_root


class DeployerAgent(StageAgent):
    stage = "deployer"

    async def run(self, run: StageRun) -> list[NewEvent]:
        state, workspace = run.state, run.workspace
        spec = state.architecture.run if state.architecture else RunSpec()
        settings = self.services.settings
        mode = settings.deploy.mode
        timeout = settings.deploy_timeout
        files: list[str] = []
        commit: str | None = None
        async with workspace.lock:
            await workspace.checkout(state.branch)
            # The program runs with the task's venv and its declared packages (what the
            # tests ran with).
            venv = await run.venv()
            repository = await repository_root(workspace.path)
            project = f"{repository.name}-{state.task_id[:8]}"
            if mode != "preview":
                pins = synced_packages(venv) if venv is not None else ()
                written = deploy_files(
                    spec, pins, project=project, base_image=settings.deploy.base_image
                )
                if written:
                    files = workspace.write_files(written.items())
                    commit = await run.commit(files, "deploy files for the app")
            engine = docker_engine(settings.deploy) if mode == "docker_in_docker" else None
            if isinstance(engine, str):  # docker_in_docker, and no engine to run it
                result = DeployResult(ok=False, kind=spec.kind, output=engine + "\n")
            elif engine is not None and files:
                result = await compose_up(
                    spec, workspace.path, engine, project=project, timeout=timeout
                )
            elif spec.kind == "web":
                # Its log and record in the repository, where a stopping process finds them.
                log_dir = preview_dir(repository, state.task_id)
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
            files=tuple(files),
            commit=commit,
        )
        return [run.event(status)]
