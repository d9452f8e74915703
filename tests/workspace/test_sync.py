"""A task's venv synced to the packages its project declares: downloaded by forgeline's
pip on the host, resolved with hashes, installed in the spawner offline; nothing when
unchanged; removed when no longer declared; one venv per task. Real venvs, real pip,
wheels built on this machine and served through ``find_links`` (never an index)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from forgeline.config import PackagesConfig, TerminalConfig
from forgeline.sandbox.local import LocalSpawner
from forgeline.sandbox.spawner import Bind
from forgeline.tools.terminal import INSTALL_RULE, Terminal
from forgeline.workspace.declared import Declaration, PackageError, read_declaration
from forgeline.workspace.packages import PackageRefused
from forgeline.workspace.sync import PackageSync, installed_distributions
from forgeline.workspace.venv import WorkspaceVenv, workspace_venv
from tests.workspace.helpers import RecordingLocal, RecordingSandbox, add_worktree
from tests.workspace.wheels import make_wheel, repack_closure

VERSION_OF = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"


@pytest.fixture
def links(tmp_path: Path) -> Path:
    """A find-links directory: tinydep 1.0, tinyapp 2.0 (needs tinydep), tinylib 1.0/2.0."""
    path = tmp_path / "links"
    make_wheel(path, "tinydep", "1.0", "Y = 1\n")
    make_wheel(path, "tinyapp", "2.0", "from tinydep import Y\nZ = Y + 1\n", ["tinydep>=1"])
    make_wheel(path, "tinylib", "1.0", "VERSION = 1\n")
    make_wheel(path, "tinylib", "2.0", "VERSION = 2\n")
    return path


def config_for(links: Path, **more: object) -> PackagesConfig:
    return PackagesConfig.model_validate(
        {"extra_allow": ["tiny*"], "use_index": False, "find_links": [str(links)], **more}
    )


def declare(worktree: Path, *lines: str) -> Declaration:
    (worktree / "requirements.txt").write_text("".join(f"{line}\n" for line in lines))
    return read_declaration(worktree)


async def run_in(venv: WorkspaceVenv, cwd: Path, *argv: str) -> str:
    result = await LocalSpawner().run(
        [str(venv.python), *argv], cwd=cwd, mounts=venv.mounts(), timeout=60
    )
    assert result.ok, result.output
    return result.stdout.strip()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_the_venv_gets_exactly_the_declared_packages_with_their_hashes(
    worktree: Path, links: Path
) -> None:
    venv = await workspace_venv(worktree)
    spawner = RecordingLocal()
    synced = await PackageSync(config_for(links), spawner).sync(
        venv, declare(worktree, "tinyapp  # the app"), cwd=worktree
    )
    assert synced is not None
    assert synced.declared == ("tinyapp",) and synced.sources == ("requirements.txt",)
    assert synced.venv == ".forgeline/venvs/t1" and synced.downloaded
    pins = {pin.name: pin for pin in synced.packages}
    assert set(pins) == {"tinyapp", "tinydep"} == set(synced.installed)
    for pin in pins.values():  # the hash of the very wheel in the wheelhouse
        assert pin.sha256 == sha256(venv.wheelhouse / pin.file)
        assert pin.size == (venv.wheelhouse / pin.file).stat().st_size
    assert pins["tinyapp"].version == "2.0"
    assert await run_in(venv, worktree, "-c", "import tinyapp; print(tinyapp.Z)") == "2"
    # Downloading and resolving was forgeline's pip on the host; the spawner only
    # installed, offline, the resolved wheels with their hashes and nothing else.
    [install] = spawner.calls
    assert install[:4] == (str(venv.python), "-m", "pip", "install")
    assert {"--no-index", "--no-deps", "--require-hashes"} <= set(install)
    assert "download" not in install


async def test_an_unchanged_declaration_is_nothing_to_do(worktree: Path, links: Path) -> None:
    venv = await workspace_venv(worktree)
    spawner = RecordingLocal()
    sync = PackageSync(config_for(links), spawner)
    declaration = declare(worktree, "tinyapp")
    assert await sync.sync(venv, declaration, cwd=worktree) is not None
    calls = len(spawner.calls)
    for wheel in links.iterdir():  # nothing could be downloaded now
        wheel.unlink()
    assert await sync.sync(venv, read_declaration(worktree), cwd=worktree) is None
    assert len(spawner.calls) == calls


async def test_what_is_no_longer_declared_is_removed(worktree: Path, links: Path) -> None:
    venv = await workspace_venv(worktree)
    sync = PackageSync(config_for(links), LocalSpawner())
    await sync.sync(venv, declare(worktree, "tinyapp"), cwd=worktree)
    synced = await sync.sync(venv, declare(worktree, "tinydep"), cwd=worktree)
    assert synced is not None and synced.removed == ("tinyapp",) and synced.installed == ()
    assert "tinyapp" not in installed_distributions(venv.site_packages)
    synced = await sync.sync(venv, declare(worktree), cwd=worktree)
    assert synced is not None and synced.removed == ("tinydep",) and synced.packages == ()
    left = installed_distributions(venv.site_packages)
    assert "tinydep" not in left and "pytest" in left
    assert "pytest" in await run_in(venv, worktree, "-m", "pytest", "--version")


async def test_a_new_version_replaces_the_old(worktree: Path, links: Path) -> None:
    venv = await workspace_venv(worktree)
    sync = PackageSync(config_for(links), LocalSpawner())
    await sync.sync(venv, declare(worktree, "tinylib==1.0"), cwd=worktree)
    synced = await sync.sync(venv, declare(worktree, "tinylib>=2"), cwd=worktree)
    assert synced is not None and synced.installed == ("tinylib",)
    assert await run_in(venv, worktree, "-c", VERSION_OF, "tinylib") == "2.0"


async def test_two_tasks_of_one_repository_keep_their_own_versions(repo: Path, links: Path) -> None:
    one, two = add_worktree(repo, "t1"), add_worktree(repo, "t2")
    sync = PackageSync(config_for(links), LocalSpawner())
    venv_one, venv_two = await workspace_venv(one), await workspace_venv(two)
    await sync.sync(venv_one, declare(one, "tinylib==1.0"), cwd=one)
    await sync.sync(venv_two, declare(two, "tinylib==2.0"), cwd=two)
    assert await run_in(venv_one, one, "-c", VERSION_OF, "tinylib") == "1.0"
    assert await run_in(venv_two, two, "-c", VERSION_OF, "tinylib") == "2.0"
    # The first task's venv is still what it declared: nothing to do there.
    assert await sync.sync(venv_one, read_declaration(one), cwd=one) is None
    assert "tinylib" not in installed_distributions(WorkspaceVenv.of(repo).site_packages)


async def test_a_package_that_does_not_exist_fails_with_pips_reason(
    worktree: Path, links: Path
) -> None:
    venv = await workspace_venv(worktree)
    sync = PackageSync(config_for(links), LocalSpawner())
    with pytest.raises(PackageError) as info:
        await sync.sync(venv, declare(worktree, "tinynothing"), cwd=worktree)
    message = str(info.value)
    assert "pip could not download tinynothing" in message
    assert "No matching distribution found for tinynothing" in message
    assert "Traceback" not in message


async def test_a_package_without_a_wheel_fails_with_pips_reason(
    worktree: Path, links: Path, tmp_path: Path
) -> None:
    source = tmp_path / "tinysrc-1.0"
    source.mkdir()
    (source / "setup.py").write_text("raise SystemExit('a build ran')\n")
    with tarfile.open(links / "tinysrc-1.0.tar.gz", "w:gz") as archive:
        archive.add(source, arcname="tinysrc-1.0")
    venv = await workspace_venv(worktree)
    with pytest.raises(PackageError, match="No matching distribution found for tinysrc"):
        await PackageSync(config_for(links), LocalSpawner()).sync(
            venv, declare(worktree, "tinysrc"), cwd=worktree
        )


async def test_offline_installs_only_from_the_wheelhouse(worktree: Path, links: Path) -> None:
    venv = await workspace_venv(worktree)
    offline = PackageSync(config_for(links, offline=True), LocalSpawner())
    with pytest.raises(PackageError, match=r"offline: only the wheelhouse"):
        await offline.sync(venv, declare(worktree, "tinydep"), cwd=worktree)
    venv.wheelhouse.mkdir(parents=True, exist_ok=True)
    (venv.wheelhouse / "tinydep-1.0-py3-none-any.whl").write_bytes(
        (links / "tinydep-1.0-py3-none-any.whl").read_bytes()
    )
    synced = await offline.sync(venv, read_declaration(worktree), cwd=worktree)
    assert synced is not None and not synced.downloaded and synced.installed == ("tinydep",)


async def test_a_denied_package_is_refused_whoever_needs_it(worktree: Path, links: Path) -> None:
    venv = await workspace_venv(worktree)
    sync = PackageSync(config_for(links, extra_deny=["tinydep"]), LocalSpawner())
    with pytest.raises(PackageRefused) as info:
        await sync.sync(venv, declare(worktree, "tinyapp"), cwd=worktree)
    assert info.value.name == "tinydep" and info.value.rule == "deny"
    assert "it comes with tinyapp" in str(info.value)
    assert "tinyapp" not in installed_distributions(venv.site_packages)


@pytest.mark.parametrize(
    ("caps", "rule"),
    [({"max_wheels": 1}, "max_wheels"), ({"max_total_mb": 0.0001}, "max_total_mb")],
)
async def test_the_caps_on_wheels_refuse_a_set_too_large(
    worktree: Path, links: Path, caps: dict[str, float], rule: str
) -> None:
    venv = await workspace_venv(worktree)
    with pytest.raises(PackageRefused) as info:
        await PackageSync(config_for(links, **caps), LocalSpawner()).sync(
            venv, declare(worktree, "tinyapp"), cwd=worktree
        )
    assert info.value.rule == rule and f"[packages] {rule}" in str(info.value)


async def test_pytests_requirements_stay_what_the_test_runner_needs(
    worktree: Path, links: Path
) -> None:
    venv = await workspace_venv(worktree)
    sync = PackageSync(config_for(links, extra_allow=["tiny*", "iniconfig"]), LocalSpawner())
    # A package needing another version of one of pytest's requirements cannot come in.
    make_wheel(links, "tinyold", "1.0", "", ["iniconfig<0.1"])
    make_wheel(links, "iniconfig", "0.0.1", "")
    with pytest.raises(PackageError, match="iniconfig"):
        await sync.sync(venv, declare(worktree, "tinyold"), cwd=worktree)
    # Declared by the project itself, it replaces the copy pytest came with ...
    await sync.sync(venv, declare(worktree, "iniconfig==0.0.1"), cwd=worktree)
    assert await run_in(venv, worktree, "-c", VERSION_OF, "iniconfig") == "0.0.1"
    # ... until the project no longer declares it: then pytest's copy is put back.
    synced = await sync.sync(venv, declare(worktree), cwd=worktree)
    assert synced is not None and synced.installed == ("iniconfig",)
    assert "pytest" in await run_in(venv, worktree, "-m", "pytest", "--version")


async def test_real_packages_install_from_their_wheels(worktree: Path, web_wheels: Path) -> None:
    """FastAPI and its test client, from wheels of forgeline's own environment."""
    venv = await workspace_venv(worktree)
    config = PackagesConfig(use_index=False, find_links=(str(web_wheels),))
    synced = await PackageSync(config, LocalSpawner()).sync(
        venv, declare(worktree, "fastapi", "httpx"), cwd=worktree
    )
    assert synced is not None
    assert {"fastapi", "starlette", "pydantic", "pydantic-core", "httpx"} <= set(synced.installed)
    code = (
        "from fastapi import FastAPI\nfrom fastapi.testclient import TestClient\n"
        "app = FastAPI()\napp.get('/health')(lambda: {'status': 'ok'})\n"
        "print(TestClient(app).get('/health').json())"
    )
    assert await run_in(venv, worktree, "-c", code) == "{'status': 'ok'}"


# --------------------------------------------------------------------------- the terminal


async def test_a_terminal_install_lasts_until_the_next_sync(worktree: Path, links: Path) -> None:
    venv = await workspace_venv(worktree)
    spawner = RecordingLocal()
    terminal = Terminal(worktree, spawner, venv=venv, packages=config_for(links))
    outcome = await terminal.run(["python", "-m", "pip", "install", "tinyapp"])
    assert outcome.ok, outcome.output
    assert outcome.rule == "python" and outcome.usage is not None
    assert "installed tinyapp 2.0" in outcome.output
    used = await terminal.run(["python", "-c", "import tinyapp; print(tinyapp.Z)"])
    assert used.output == "2\n"
    again = await terminal.run(["pip", "install", "tinyapp"])
    assert again.ok and "already installed" in again.output
    listed = await terminal.run(["pip", "list"])
    assert "tinyapp" in listed.output and "pytest" in listed.output
    # The next sync makes the venv the declared set again.
    synced = await PackageSync(config_for(links), spawner).sync(
        venv, read_declaration(worktree), cwd=worktree
    )
    assert synced is not None and set(synced.removed) == {"tinyapp", "tinydep"}


async def test_terminal_installs_are_checked_by_the_policy(worktree: Path, links: Path) -> None:
    venv = await workspace_venv(worktree)
    terminal = Terminal(worktree, LocalSpawner(), venv=venv, packages=config_for(links))
    refused = await terminal.run(["pip", "install", "reqeusts"])
    assert not refused.allowed and refused.rule == "[packages] typosquat"
    assert "'requests'" in refused.reason
    refused = await terminal.run(["pip", "install", "left-pad-for-python"])
    assert not refused.allowed and refused.rule == "[packages] allow"
    missing = await terminal.run(["pip", "install", "tinynothing"])
    assert missing.allowed and missing.exit_code == 1
    assert "No matching distribution found for tinynothing" in missing.output
    [*_, record] = terminal.commands
    assert record.exit_code == 1 and not record.denied


async def test_installs_can_be_turned_off_and_need_the_venv(worktree: Path) -> None:
    venv = await workspace_venv(worktree)
    off = Terminal(worktree, LocalSpawner(), TerminalConfig(installs=False), venv=venv)
    outcome = await off.run(["pip", "install", "x"])
    assert not outcome.allowed and outcome.rule == INSTALL_RULE
    assert "turned off" in outcome.reason
    novenv = Terminal(worktree, LocalSpawner())
    outcome = await novenv.run(["pip", "install", "x"])
    assert not outcome.allowed and "workspace_venv" in outcome.reason
    bad = await Terminal(worktree, LocalSpawner(), venv=venv).run(["pip", "install", "-e", "."])
    assert not bad.allowed and bad.rule == INSTALL_RULE and "'-e'" in bad.reason


@pytest.mark.sandbox
async def test_a_sandboxed_sync_writes_only_the_venv(
    worktree: Path, links: Path, sandbox: RecordingSandbox
) -> None:
    venv = await workspace_venv(worktree)
    synced = await PackageSync(config_for(links), sandbox).sync(
        venv, declare(worktree, "tinyapp"), cwd=worktree
    )
    assert synced is not None and synced.usage is not None
    assert synced.usage.mechanism != "none"
    [(argv, binds)] = sandbox.calls
    assert argv[:4] == (str(venv.python), "-m", "pip", "install")
    assert Bind(venv.path, writable=True) in binds
    assert Bind(venv.wheelhouse, writable=False) in binds
    terminal = Terminal(worktree, sandbox, venv=venv)
    used = await terminal.run(["python", "-c", "import tinyapp; print(tinyapp.Z)"])
    assert used.output == "2\n", used.output
    # An ordinary run sees the venv read-only again.
    write = await terminal.run(
        ["python", "-c", f"open({str(venv.site_packages / 'planted.py')!r}, 'w')"]
    )
    assert not write.ok and not (venv.site_packages / "planted.py").exists()


def test_repacked_wheels_are_what_forgeline_has_installed(tmp_path: Path) -> None:
    """The test helper itself: a re-packed wheel holds the installed files."""
    [wheel] = repack_closure(["iniconfig"], tmp_path)
    assert wheel.name.startswith("iniconfig-") and wheel.suffix == ".whl"
