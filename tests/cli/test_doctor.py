"""``forgeline doctor`` through the command line: a table with the fix for each problem,
exit 0 when nothing stops a run and 1 when something does, never a key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forgeline.cli.app import app

KEY = "doctor-cli-key-0123456789abcdef"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FORGELINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")


def test_doctor_on_this_machine_says_ready(tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", "--workspace", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ready: nothing stops a run" in result.output
    for check in ("config", "git", "sandbox", "local runtime", "store", "disk"):
        assert check in result.output


def test_doctor_with_a_broken_setup_exits_1_with_the_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTHER_BOX_KEY", KEY)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "forgeline.toml").write_text(
        f'store = "sqlite:///{tmp_path}/afile/forgeline.db"\n'
        '[providers.gpu]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "GPU_BOX_KEY"\n'
        '[providers.other]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "OTHER_BOX_KEY"\n'
        '[models]\ndefault = "gpu:m"\nreviewer = "other:m"\n'
    )
    result = runner.invoke(app, ["doctor", "-w", str(tmp_path)])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "2 problem(s) would stop a run" in said
    assert "export GPU_BOX_KEY=<your key>" in said
    assert "is a file" in said and "use another path" in said
    assert "key from $OTHER_BOX_KEY (set)" in said
    assert KEY not in result.output


def test_doctor_is_listed_in_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert "doctor" in result.output
