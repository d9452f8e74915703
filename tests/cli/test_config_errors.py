"""Configuration errors through the command line: a message, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forgeline.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize("command", [("tasks",), ("run", "todo cli")])
def test_invalid_json_in_an_environment_table_is_a_message_and_exit_2(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = runner.invoke(
        app, [*command, "--workspace", str(tmp_path)], env={"FORGELINE_MODELS": "notjson"}
    )
    assert result.exit_code == 2, result.output
    assert "error: FORGELINE_MODELS is not valid JSON" in result.output
    assert isinstance(result.exception, SystemExit), "no traceback, an exit"
    assert not (tmp_path / ".forgeline").exists() and not (tmp_path / ".git").exists()


def test_a_config_option_naming_a_directory_says_it_is_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tasks", "--workspace", str(tmp_path), "--config", str(tmp_path)])
    assert result.exit_code == 2
    assert "is a directory" in result.output
    assert "does not exist" not in result.output


@pytest.mark.parametrize("command", [("worker",), ("workers",), ("retry", "t-1")])
def test_the_cluster_commands_name_a_bad_config_file_without_a_traceback(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    config = tmp_path / "forgeline.toml"
    config.write_text("[models]\nworkspace_venv = false\n")
    result = runner.invoke(app, [*command, "--root", str(tmp_path), "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "invalid configuration" in result.output and "workspace_venv" in result.output
    assert isinstance(result.exception, SystemExit), "no traceback, an exit"
