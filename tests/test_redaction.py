"""The redactor: which secrets it knows, what it masks, and the log-record path.

The event and message paths are tested end to end through the command line against a
provider that echoes the key (tests/cli/test_secrets.py).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from forgeline import redaction
from forgeline.config import Settings, load_settings
from forgeline.core.events import NewEvent, StageFailed, TaskInitiated
from forgeline.redaction import MASK, Redactor, redact, redact_event, secrets_of

KEY = "k3y-of-my-provider-0123456789"  # no well-known shape: only known from the settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Incorrect API key provided: sk-proj-abcdefghijklmnop0123", f"provided: {MASK}"),
        ("'authorization': 'Bearer abcdefgh12345678'", f"'Bearer {MASK}'"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {MASK}"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 used", f"token {MASK} used"),
        ("slack xoxb-1234-5678-abcdefgh", f"slack {MASK}"),
        ("postgresql://forgeline:hunter2hunter2@db:5432/x", f"forgeline:{MASK}@db"),
        ("sk-ant-api03-abcdefghijklmnopqrstuv", MASK),
    ],
)
def test_well_known_key_shapes_are_masked_unconfigured(text: str, expected: str) -> None:
    assert expected in Redactor().text(text)


@pytest.mark.parametrize(
    "text",
    [
        "Bearer authentication is described in docs/auth.md",
        "basic functionality of the disk-usage-statistics-report",
        "http://127.0.0.1:8000/v1 and postgresql://forgeline@db:5432/x",
        "task-0123456789abcdef0123 on branch forgeline/0123456789ab",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().text(text) == text


def test_configured_secrets_are_masked_whole_and_url_encoded() -> None:
    redactor = Redactor([KEY, "p@ss word/123", "short"])
    assert redactor.text(f"key={KEY}!") == f"key={MASK}!"
    assert redactor.text("url user:p%40ss%20word%2F123@") == f"url user:{MASK}@"
    assert redactor.text("a short word") == "a short word", "too short to be treated as secret"


def test_the_secrets_come_from_the_settings_and_key_named_variables() -> None:
    settings = Settings(
        providers={
            "file": {"base_url": "http://x/v1", "api_key": "file-key-0123456789"},
            "env": {"base_url": "http://y/v1", "api_key_env": "MY_PROVIDER_VAR"},
        },
        coder={"env": {"AIDER_SOMETHING": "coder-env-secret-0123"}},
        store="postgresql://forgeline:store-password-01@db/forgeline",
        packages={"index_url": "https://user:index-token-0123@pypi.example/simple"},
    )
    environ = {
        "MY_PROVIDER_VAR": KEY,
        "GITHUB_TOKEN": "github-token-value-0123",
        "ANTHROPIC_API_KEY": "anthropic-key-value-0123",
        "HOME": "/home/someone-with-a-long-name",
    }
    assert secrets_of(settings, environ) == {
        "file-key-0123456789",
        KEY,
        "coder-env-secret-0123",
        "store-password-01",
        "index-token-0123",
        "github-token-value-0123",
        "anthropic-key-value-0123",
    }


def test_load_settings_hands_its_secrets_to_the_process_redactor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGELINE_TEST_ONLY_VAR", KEY)
    (tmp_path / "forgeline.toml").write_text(
        '[providers.mine]\nbase_url = "http://127.0.0.1:9/v1"\n'
        'api_key_env = "FORGELINE_TEST_ONLY_VAR"\n'
    )
    load_settings(tmp_path)
    assert redact(f"the server said: {KEY}") == f"the server said: {MASK}"


def test_an_event_payload_is_redacted_and_its_envelope_kept() -> None:
    redaction.remember([KEY])
    event = NewEvent(
        stream_id="task-a",
        data=StageFailed(stage="planner", error=f"401: Incorrect API key provided: {KEY}"),
        correlation_id="a",
        actor="planner",
    )
    redacted = redact_event(event)
    assert isinstance(redacted.data, StageFailed)
    assert redacted.data.error == f"401: Incorrect API key provided: {MASK}"
    assert redacted.model_dump(exclude={"data"}) == event.model_dump(exclude={"data"})
    clean = NewEvent(
        stream_id="task-a",
        data=TaskInitiated(
            request="build a todo_cli: see https://example.org/x",
            repository="x_y",
            branch="forgeline/a",
            base_commit="0",
        ),
        correlation_id="a",
        actor="user",
    )
    assert redact_event(clean) is clean, "nothing secret: the very same event"


def test_log_lines_are_redacted_message_arguments_and_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redaction.remember([KEY])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("forgeline.test.redaction")
    logger.addHandler(handler)
    try:
        logger.warning("provider answered: %s", f"Incorrect API key provided: {KEY}")
        try:
            raise RuntimeError(f"HTTP 500, request headers: Authorization: Bearer {KEY}")
        except RuntimeError:
            logger.exception("worker failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue() + caplog.text
    assert KEY not in written
    assert f"Incorrect API key provided: {MASK}" in written
    assert f"Authorization: Bearer {MASK}" in written
    assert "RuntimeError" in written, "the traceback is still there, redacted"
