"""``load_settings``: every way the configuration can be wrong is a ``ConfigError`` that
names the file or the variable and says what to write instead (issue 13, finding 3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forgeline.config import load_settings
from forgeline.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_forgeline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FORGELINE_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FORGELINE_MODELS", "notjson"),
        ("FORGELINE_PROVIDERS", '{"gpu": '),
        ("FORGELINE_CODER__ARGS", "--verbose"),
        ("FORGELINE_TERMINAL__EXTRA_ALLOW", "make test"),
        ("forgeline_models", "{default}"),  # the variables' names are not case-sensitive
    ],
)
def test_invalid_json_in_a_table_valued_variable_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("FORGELINE_CODER__BACKEND", "llm")  # plain text, not JSON: fine
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{variable} is not valid JSON (")
    assert "FORGELINE_CODER__BACKEND" not in message
    assert "written as JSON" in message and "FORGELINE_MODELS__DEFAULT=" in message
    assert value not in message or len(value) < 8, "the value is not repeated (a secret?)"


def test_valid_json_and_single_keys_from_the_environment_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGELINE_MODELS", '{"default": "openai:gpt-4o-mini"}')
    monkeypatch.setenv("FORGELINE_MODELS__REVIEWER", "anthropic:claude-sonnet-4-5")
    monkeypatch.setenv("FORGELINE_CODER__ARGS", '["--no-stream"]')
    settings = load_settings(tmp_path)
    assert settings.models.for_role("planner") == ["openai:gpt-4o-mini"]
    assert settings.models.for_role("reviewer") == ["anthropic:claude-sonnet-4-5"]
    assert settings.coder.args == ("--no-stream",)


def test_a_config_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory: name a TOML file"):
        load_settings(tmp_path, tmp_path)
    (tmp_path / "forgeline.toml").mkdir()
    with pytest.raises(ConfigError, match=r"forgeline\.toml is a directory"):
        load_settings(tmp_path)


def test_a_missing_config_file_says_it_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path, tmp_path / "nope.toml")
    assert load_settings(tmp_path).mode == "event", "no forgeline.toml: the defaults"


def test_an_unreadable_or_undecodable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "forgeline.toml"
    path.write_bytes(b'mode = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings(tmp_path)
    path.write_text("mode = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("model", "tier"),
    [
        ("local:qwen2.5-coder-1.5b", "small"),
        ("ollama:qwen2.5-coder:7b", "small"),
        ("vllm:Qwen/Qwen2.5-Coder-1.5B-Instruct, openai:gpt-4o", "small"),  # the first model
        ("openai:gpt-4o-mini", "frontier"),
        ("anthropic:claude-sonnet-4-5", "frontier"),
    ],
)
def test_the_tier_is_chosen_by_the_model_string(tmp_path: Path, model: str, tier: str) -> None:
    assert load_settings(tmp_path).tier(model)[0] == tier


def test_a_tier_table_changes_only_the_keys_it_names_and_profile_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "forgeline.toml").write_text(
        '[profiles.small]\ncandidates = 3\n\n[profiles.mid]\nmodels = ["openai:gpt-4o-mini"]\n'
        "candidates = 2\nreview = false\n"
    )
    settings = load_settings(tmp_path)
    name, small = settings.tier("local:qwen2.5-coder-1.5b")
    assert (name, small.candidates, small.designers, small.review) == ("small", 3, 3, False)
    assert settings.tier("openai:gpt-4o-mini")[0] == "mid"  # a tier of the user's own
    assert settings.tier("openai:gpt-4o")[0] == "frontier"
    monkeypatch.setenv("FORGELINE_PROFILE", "frontier")
    assert load_settings(tmp_path).tier("local:qwen2.5-coder-1.5b")[0] == "frontier"
    monkeypatch.setenv("FORGELINE_PROFILE", "huge")
    with pytest.raises(ConfigError, match="profile 'huge' is not a tier"):
        load_settings(tmp_path)
    monkeypatch.delenv("FORGELINE_PROFILE")
    (tmp_path / "forgeline.toml").write_text('[profiles.small]\nfilters = ["magic"]\n')
    with pytest.raises(ConfigError, match="unknown filter"):
        load_settings(tmp_path)
