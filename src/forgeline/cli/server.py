"""The server's commands: ``serve``, ``keys create|list|revoke``, ``agents list|add|remove``.

They share the server's settings: the workspaces root (``--workspaces-root``, else the
configured one, else the current directory), its ``forgeline.toml`` (or ``--config``)
and the store (``--store``, else the configured one, else
``<root>/.forgeline/forgeline.db``). Point ``forgeline run`` at the same store
(``--store`` or ``FORGELINE_STORE``) and both see the same tasks.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from forgeline.cli.edge import console, given, run_async, sandbox_flags, warn
from forgeline.cli.options import Broker, ConfigFile, RequireSandbox, Store, Unsafe
from forgeline.config import Settings, load_settings
from forgeline.core.keys import Scope
from forgeline.runtime import Runtime, open_runtime

Root = Annotated[
    Path | None,
    typer.Option(
        "--workspaces-root",
        help="The directory holding the repositories tasks work on (default: the "
        "configured one, else the current directory).",
        envvar="FORGELINE_WORKSPACES_ROOT",
    ),
]

keys = typer.Typer(help="API keys of the server: create (shown once), list, revoke.")
agents = typer.Typer(help="The agents tasks are assigned to by complexity (note 002).")


def server_settings(
    root: Path | None, store: str | None, config: Path | None, **overrides: object
) -> Settings:
    base = (root or Path.cwd()).expanduser().resolve()
    settings = load_settings(base, config, store=store, **overrides)
    return settings.model_copy(update={"workspaces_root": root or settings.workspaces_root or base})


@asynccontextmanager
async def _runtime(
    root: Path | None, store: str | None, config: Path | None, create: bool
) -> AsyncIterator[Runtime]:
    settings = server_settings(root, store, config)
    async with open_runtime(settings, agents=False, create=create) as runtime:
        yield runtime


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default 8000).")] = None,
    workspaces_root: Root = None,
    store: Store = None,
    broker: Broker = None,
    config: ConfigFile = None,
    unsafe_no_sandbox: Unsafe = False,
    require_sandbox: RequireSandbox = False,
) -> None:
    """Serve the API, the live event stream and the dashboard, and run the pipeline's
    workers for every task in the store; with a broker (--broker, FORGELINE_BROKER), hand
    the work to the cluster's `forgeline worker` processes instead and follow it. Every
    route needs a key: `forgeline keys create`."""
    import uvicorn

    from forgeline.api.app import create_app, server_execution
    from forgeline.transport.broker import redact_url

    async def go() -> None:
        settings = server_settings(
            workspaces_root,
            store,
            config,
            broker=broker,
            **sandbox_flags(unsafe_no_sandbox, require_sandbox),
        )
        listen = settings.server.model_copy(update=given(host=host, port=port))
        settings = settings.model_copy(update={"server": listen})
        execution = server_execution(settings)  # a bad broker setting: a message, at once
        async with open_runtime(settings, execution=execution, warn=warn) as runtime:
            app = create_app(settings, runtime=runtime)
            work = (
                "this process's workers"
                if settings.broker is None
                else f"the workers of {redact_url(settings.broker)}"
            )
            console.print(
                f"forgeline serving http://{listen.host}:{listen.port}/ "
                f"(workspaces under {settings.workspaces_root}, store {runtime.store.location}, "
                f"work done by {work})",
                highlight=False,
            )
            server = uvicorn.Server(
                uvicorn.Config(app, host=listen.host, port=listen.port, log_config=_log_config())
            )
            await server.serve()

    run_async(go())


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with its access lines formatted as plain messages: the
    process's redactor (``forgeline.redaction``) has merged a record's arguments into its
    message by then, which uvicorn's access formatter cannot take."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"] = {
        "()": "uvicorn.logging.DefaultFormatter",
        "fmt": "%(levelprefix)s %(message)s",
    }
    return config


@keys.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[Scope, typer.Option(help="read < write < admin.")] = "read",
    workspaces_root: Root = None,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Create an API key and print it once (only its digest is kept)."""

    async def go() -> None:
        async with _runtime(workspaces_root, store, config, create=True) as runtime:
            from forgeline.api.keyring import Keyring

            state, key = await Keyring(runtime.store).create(name, scope)
        console.print(f"key {state.key_id} ({state.scope}) for {escape(state.name)}:")
        print(key)
        console.print("[yellow]Keep it now: it is not shown again.[/]")

    run_async(go())


@keys.command("list")
def list_keys(workspaces_root: Root = None, store: Store = None, config: ConfigFile = None) -> None:
    """The keys: id, name, scope, created, revoked."""

    async def go() -> None:
        async with _runtime(workspaces_root, store, config, create=False) as runtime:
            from forgeline.api.keyring import Keyring

            found = await Keyring(runtime.store).keys()
        table = Table("id", "name", "scope", "created", "revoked")
        for key in sorted(found.keys.values(), key=lambda k: k.created_at):
            revoked = f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else ""
            table.add_row(
                key.key_id, escape(key.name), key.scope, f"{key.created_at:%Y-%m-%d %H:%M}", revoked
            )
        console.print(table)

    run_async(go())


@keys.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (`forgeline keys list`).")],
    workspaces_root: Root = None,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Revoke a key: the server refuses it from then on."""

    async def go() -> None:
        async with _runtime(workspaces_root, store, config, create=False) as runtime:
            from forgeline.api.keyring import Keyring

            await Keyring(runtime.store).revoke(key_id)
        console.print(f"revoked {key_id}")

    run_async(go())


@agents.command("list")
def list_agents(
    workspaces_root: Root = None, store: Store = None, config: ConfigFile = None
) -> None:
    """The agents, their complexity ranges, models and what they work on."""

    async def go() -> None:
        async with _runtime(workspaces_root, store, config, create=False) as runtime:
            from forgeline.pipeline.assigner import Assignments

            registry = await Assignments(runtime.store).registry()
        table = Table("agent", "complexity", "capacity", "status", "tasks", "models")
        for agent in registry.effective():
            models = ", ".join(f"{r}={c}" for r, c in sorted(agent.models.items())) or "configured"
            capacity = "-" if agent.capacity is None else str(agent.capacity)
            table.add_row(
                agent.name,
                agent.range,
                capacity,
                agent.status,
                " ".join(agent.tasks),
                escape(models),
            )
        console.print(table)
        if not registry.agents:
            console.print("no agents registered: the default agent takes every task")

    run_async(go())


@agents.command("add")
def add_agent(
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="ROLE=CHAIN, e.g. coder='openai:gpt-4o-mini' (repeat)."),
    ] = None,
    min_complexity: Annotated[int, typer.Option(min=1, max=10)] = 1,
    max_complexity: Annotated[int, typer.Option(min=1, max=10)] = 10,
    capacity: Annotated[int, typer.Option(min=1, help="Tasks at once.")] = 1,
    workspaces_root: Root = None,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Register an agent (or replace the one of that name)."""
    from forgeline.errors import InvalidRequestError

    async def go() -> None:
        models: dict[str, str] = {}
        for item in model or []:
            role, sep, chain = item.partition("=")
            if not sep:
                raise InvalidRequestError(f"--model {item!r}: write ROLE=CHAIN")
            models[role.strip()] = chain.strip()
        settings = server_settings(workspaces_root, store, config)
        async with open_runtime(settings, agents=False) as runtime:
            from forgeline.pipeline.assigner import Assignments

            agent = await Assignments(runtime.store).register(
                name,
                models,
                min_complexity=min_complexity,
                max_complexity=max_complexity,
                capacity=capacity,
                settings=settings,
            )
        console.print(f"agent {agent.name}: complexity {agent.range}, capacity {agent.capacity}")

    run_async(go())


@agents.command("remove")
def remove_agent(
    name: Annotated[str, typer.Argument(help="The agent's name.")],
    workspaces_root: Root = None,
    store: Store = None,
    config: ConfigFile = None,
) -> None:
    """Remove an agent: it takes no new task; the tasks it works on go on."""

    async def go() -> None:
        async with _runtime(workspaces_root, store, config, create=False) as runtime:
            from forgeline.pipeline.assigner import Assignments

            await Assignments(runtime.store).remove(name)
        console.print(f"removed agent {name}")

    run_async(go())
