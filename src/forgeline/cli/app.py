"""``forgeline``: the command line, a thin edge over the runtime (``forgeline.runtime``).

The commands live by what they do: ``work`` (run agents on a task), ``show`` (read the
store), ``control`` (cancel, stop a preview). Exit codes: 0 done or waiting for a person,
1 the task failed, 2 bad input or configuration, 130 interrupted.
"""

from __future__ import annotations

import typer

from forgeline.cli import changes, cluster, control, evolve, server, show, work
from forgeline.cli import tools as tool_commands
from forgeline.cli.doctor import doctor

app = typer.Typer(
    name="forgeline",
    help="A software factory run by AI agents: plan, design, code, test, review, deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (
    work.run,
    work.resume,
    work.answer,
    work.approve,
    show.usage,
    show.tasks,
    show.status,
    show.events,
    control.cancel,
    control.stop,
    cluster.worker,
    cluster.workers,
    cluster.retry,
    doctor,
    server.serve,
    evolve.evolve,
):
    app.command()(command)
app.add_typer(server.keys, name="keys")
app.add_typer(server.agents, name="agents")
tool_commands.register(app)
app.add_typer(changes.app)


def main() -> None:
    app()
