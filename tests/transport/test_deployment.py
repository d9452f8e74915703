"""The deployment in the repository (docker-compose.yml, Dockerfile) against what the
code accepts: Compose cannot run here, so each forgeline container's command is checked
against the CLI's own options, and its settings variables against the settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
import yaml

from forgeline.cli.app import app
from forgeline.config import Settings
from forgeline.runs.containers import validate_compose
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"


def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def _forgeline_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _document()["services"]
    return {name: s for name, s in services.items() if s.get("image") == "forgeline:latest"}


def test_the_compose_file_follows_the_compose_specification() -> None:
    document = _document()
    validate_compose(document)
    assert {"postgres", "rabbitmq", "api", "worker"} <= set(document["services"])
    assert set(_forgeline_services()) == {"api", "worker"}


def test_each_forgeline_command_in_the_compose_file_takes_the_flags_it_is_given() -> None:
    group: Any = typer.main.get_command(app)
    for name, service in _forgeline_services().items():
        [command, *args] = service["command"]
        found = group.commands.get(command)
        assert found is not None, f"{name}: no command forgeline {command}"
        flags = {opt for p in found.params for opt in (*p.opts, *p.secondary_opts)}
        given = [a for a in args if a.startswith("--")]
        unknown = [f for f in given if f not in flags]
        assert not unknown, f"{name}: forgeline {command} has no {unknown}"
        # a flag's value is not another flag (a typo shifts them)
        for flag, value in zip(args, [*args[1:], None], strict=True):
            option = next((p for p in found.params if flag in p.opts), None)
            if option is not None and not getattr(option, "is_flag", True):
                assert value is not None and not value.startswith("--"), (name, flag)


def test_the_settings_variables_it_sets_are_forgeline_settings() -> None:
    fields = set(Settings.model_fields)
    dockerfile = (REPO / "Dockerfile").read_text()
    for name, service in _forgeline_services().items():
        variables = [v for v in service["environment"] if v.startswith("FORGELINE_")]
        assert {"FORGELINE_STORE", "FORGELINE_BROKER"} <= set(variables), name
        for variable in variables:
            assert variable.removeprefix("FORGELINE_").lower() in fields, (name, variable)
    assert "FORGELINE_WORKSPACES_ROOT=/workspaces" in dockerfile
    # what the image copies exists, and it runs forgeline
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), path
    assert 'ENTRYPOINT ["forgeline"]' in dockerfile
    assert Path(REPO / ".dockerignore").exists()
