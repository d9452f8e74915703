"""``forgeline doctor``'s checks, on this machine and with broken set-ups.

This machine is set up as ``scripts/test`` leaves it (bubblewrap, git, the ``local``
extra), so a fresh workspace must come out ready; each broken set-up must come out as a
``fail`` that says how to fix it, and no key is ever part of a finding.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydantic_ai.models
import pytest

from forgeline.doctor import Finding, diagnose
from tests.llm.openai_server import OpenAIStub

KEY = "doctor-test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FORGELINE_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    # The model file goes to the test's own data directory: not assembled there yet.
    monkeypatch.setenv("FORGELINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # --reach: a stub


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.blocks]


async def test_a_fresh_workspace_on_this_machine_is_ready(tmp_path: Path) -> None:
    findings = await diagnose(tmp_path / "ws")
    assert failures(findings) == []
    found = by_check(findings)
    assert {"config", "git", "sandbox", "local runtime", "store"} <= set(found)
    assert found["sandbox"].detail == "bubblewrap isolates the code runs"
    model = found["local model qwen2.5-coder-1.5b"]
    assert model.status == "ok" and "not assembled yet" in model.detail
    assert "the first run creates" in found["store"].detail
    assert not (tmp_path / "ws").exists(), "a check creates nothing"


async def test_a_provider_whose_key_variable_is_missing_blocks_a_run(tmp_path: Path) -> None:
    (tmp_path / "forgeline.toml").write_text(
        '[providers.gpu]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "GPU_BOX_KEY"\n'
        '[models]\ndefault = "gpu:m"\nreviewer = "openai:gpt-4o-mini"\n'
    )
    found = by_check(await diagnose(tmp_path))
    gpu, openai = found["model gpu:m"], found["model openai:gpt-4o-mini"]
    assert gpu.blocks and "$GPU_BOX_KEY, which is not set" in gpu.detail
    assert gpu.fix == "export GPU_BOX_KEY=<your key>"
    assert openai.blocks and openai.detail == "$OPENAI_API_KEY is not set"
    assert "local runtime" not in found, "no role uses the local model"


async def test_a_set_key_is_named_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPU_BOX_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY + "-openai")
    (tmp_path / "forgeline.toml").write_text(
        '[providers.gpu]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "GPU_BOX_KEY"\n'
        '[models]\ndefault = "gpu:m"\nreviewer = "openai:gpt-4o-mini"\n'
    )
    findings = await diagnose(tmp_path)
    found = by_check(findings)
    assert found["model gpu:m"].status == "ok"
    assert "key from $GPU_BOX_KEY (set)" in found["model gpu:m"].detail
    assert found["model openai:gpt-4o-mini"].detail == "key from $OPENAI_API_KEY (set)"
    assert not any(KEY in f.detail or KEY in f.fix for f in findings)


async def test_a_key_in_the_file_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "forgeline.toml").write_text(
        f'[providers.gpu]\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "{KEY}"\n'
        '[models]\ndefault = "gpu:m"\n'
    )
    finding = by_check(await diagnose(tmp_path))["model gpu:m"]
    assert finding.status == "warn" and "api_key_env" in finding.fix
    assert KEY not in finding.detail + finding.fix


@pytest.mark.parametrize(
    ("script", "status", "said"),
    [
        ([("ok", {})], "ok", "it answers"),
        ([("echo", 401)], "fail", "the provider refused the key (HTTP 401)"),
        ([("status", 503)], "warn", "it answered HTTP 503"),
    ],
)
async def test_reach_asks_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: list, status: str, said: str
) -> None:
    monkeypatch.setenv("GPU_BOX_KEY", KEY)
    with OpenAIStub(script) as stub:
        (tmp_path / "forgeline.toml").write_text(
            f'[providers.gpu]\nbase_url = "{stub.base_url}"\napi_key_env = "GPU_BOX_KEY"\n'
            '[models]\ndefault = "gpu:m"\n'
        )
        finding = by_check(await diagnose(tmp_path, reach=True, timeout=2))["model gpu:m"]
    assert stub.requests[0]["path"] == "/v1/models"
    assert finding.status == status and said in finding.detail
    assert KEY not in finding.detail


async def test_reach_names_a_provider_that_does_not_answer(tmp_path: Path) -> None:
    (tmp_path / "forgeline.toml").write_text(
        '[providers.gpu]\nbase_url = "http://127.0.0.1:9/v1"\n[models]\ndefault = "gpu:m"\n'
    )
    finding = by_check(await diagnose(tmp_path, reach=True, timeout=1))["model gpu:m"]
    assert finding.blocks and "cannot reach http://127.0.0.1:9/v1" in finding.detail


async def test_a_store_path_that_cannot_be_created_blocks_a_run(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    finding = by_check(await diagnose(tmp_path, store=f"sqlite:///{tmp_path}/afile/f.db"))["store"]
    assert finding.blocks and f"{tmp_path / 'afile'} is a file" in finding.detail


async def test_a_store_on_a_read_only_place_blocks_a_run(tmp_path: Path) -> None:
    # /proc refuses new files to everyone, root included (permissions would not).
    finding = by_check(await diagnose(tmp_path, store="sqlite:////proc/forgeline/f.db"))["store"]
    assert finding.blocks and "/proc is not writable" in finding.detail


async def test_a_damaged_store_is_named_not_a_traceback(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"this is not a database" * 100)
    finding = by_check(await diagnose(tmp_path, store=str(damaged)))["store"]
    assert finding.blocks and str(damaged) in finding.detail
    assert damaged.read_bytes() == b"this is not a database" * 100, "left as it was"


async def test_an_existing_store_is_opened_and_read(tmp_path: Path) -> None:
    from forgeline.store import open_store

    async with open_store(str(tmp_path / "s.db")):
        pass
    finding = by_check(await diagnose(tmp_path, store=str(tmp_path / "s.db")))["store"]
    assert finding.status == "ok" and "0 task(s)" in finding.detail


async def test_without_bubblewrap_the_sandbox_blocks_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git",):
        found = next(
            Path(p) / tool for p in os.environ["PATH"].split(":") if (Path(p) / tool).exists()
        )
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    try:
        finding = by_check(await diagnose(tmp_path))["sandbox"]
        assert finding.blocks and "bubblewrap (bwrap) is not installed" in finding.detail
        assert "scripts/install" in finding.fix and "--unsafe-no-sandbox" in finding.fix
        (tmp_path / "forgeline.toml").write_text("unsafe_no_sandbox = true\n")
        assert by_check(await diagnose(tmp_path))["sandbox"].status == "warn"
    finally:
        monkeypatch.undo()
        from forgeline.sandbox.bwrap import sandbox_available

        assert sandbox_available(refresh=True) is None, "the cached answer is right again"


async def test_a_broken_config_is_a_finding_and_the_rest_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGELINE_MODELS", "notjson")
    findings = await diagnose(tmp_path)
    found = by_check(findings)
    assert found["config"].blocks and "FORGELINE_MODELS is not valid JSON" in found["config"].detail
    assert found["git"].status == "ok" and "store" in found
