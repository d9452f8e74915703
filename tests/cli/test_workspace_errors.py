"""A workspace that cannot be used, through the command line: a message, exit 2, and no
repository made inside another (issue 13, finding 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forgeline.cli.app import app
from tests.scripts.todo_project import CONFIG

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORGELINE_MODELS__DEFAULT", "FORGELINE_WORKSPACE", "FORGELINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=u", "-c", "user.email=u@x", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_run_in_a_subdirectory_of_a_repository_names_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "app.py").write_text("A = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "mine")
    (repo / "src" / "app.py").write_text("A = 2\n")
    config = tmp_path / "forgeline.toml"
    config.write_text(CONFIG)
    result = runner.invoke(app, ["run", "todo", "-w", str(repo / "src"), "-c", str(config)])
    assert result.exit_code == 2
    assert f"is inside the git repository {repo}" in " ".join(result.output.split())
    assert not (repo / "src" / ".git").exists()
    assert git(repo, "log", "--format=%s") == "mine\n"
    assert (repo / "src" / "app.py").read_text() == "A = 2\n"


def test_run_on_a_bare_repository_says_to_clone_it(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    config = tmp_path / "forgeline.toml"
    config.write_text(CONFIG)
    result = runner.invoke(
        app, ["run", "todo", "-w", str(tmp_path / "bare.git"), "-c", str(config)]
    )
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "bare git repository" in said and "git clone" in said
    assert not (tmp_path / "bare.git" / ".git").exists()
    assert git(tmp_path / "bare.git", "rev-parse", "--is-bare-repository") == "true\n"
