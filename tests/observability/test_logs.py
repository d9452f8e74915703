"""Structured logs: forgeline's records as JSON lines off a terminal, task ids bound,
secrets redacted by the one redactor."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from forgeline import redaction
from forgeline.config import Settings
from forgeline.observability.config import TelemetryConfig
from forgeline.observability.logs import ROOT, bind_task, configure_logging
from forgeline.tools.config import EmailConfig, GitHubConfig

log = logging.getLogger("forgeline.tests.logs")


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    root = logging.getLogger(ROOT)
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_the_task_bound() -> None:
    out = io.StringIO()  # not a terminal
    configure_logging(TelemetryConfig(log_level="info"), stream=out)
    with bind_task("t1", stage="coder"):
        log.info("stage %s started", "coder", extra={"trigger": "plan.item.dispatched"})
    log.warning("idle")

    first, second = lines(out)
    assert first["event"] == "stage coder started"
    assert first["task_id"] == "t1" and first["correlation_id"] == "t1"
    assert first["stage"] == "coder" and first["level"] == "info"
    assert first["trigger"] == "plan.item.dispatched"
    assert first["logger"] == "forgeline.tests.logs"
    assert "timestamp" in first
    assert "task_id" not in second


def test_level_and_console_format() -> None:
    out = io.StringIO()
    configure_logging(TelemetryConfig(log_level="warning", log_format="console"), stream=out)
    log.info("hidden")
    log.error("shown", extra={"code": 3})
    text = out.getvalue()
    assert "hidden" not in text
    assert "shown" in text and "code=3" in text and not text.lstrip().startswith("{")


def test_configuring_again_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(TelemetryConfig(), stream=first)
    configure_logging(TelemetryConfig(), stream=second)
    log.warning("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once"]


def test_secrets_from_the_settings_are_redacted() -> None:
    # the tools' secrets are among the settings' secrets the one redactor knows
    settings = Settings(
        github=GitHubConfig(token=SecretStr("ghp_secret_value_1234"), token_env="MY_GH"),
        email=EmailConfig(password=SecretStr("smtp-password-5678")),
        telemetry=TelemetryConfig(otlp_headers={"x-key": SecretStr("collector-key-0000")}),
    )
    secrets = redaction.secrets_of(settings, environ={"MY_GH": "env-token-5678"})
    assert secrets >= {
        "ghp_secret_value_1234",
        "env-token-5678",
        "smtp-password-5678",
        "collector-key-0000",
    }
    redaction.remember(secrets)
    out = io.StringIO()
    configure_logging(TelemetryConfig(), stream=out)
    log.warning(
        "push failed: %s",
        "fatal: https://x:ghp_secret_value_1234@host",
        extra={"args_seen": ["env-token-5678"]},
    )
    try:
        raise RuntimeError("login refused for smtp-password-5678")
    except RuntimeError:
        log.exception("mail failed")

    first, second = lines(out)
    assert first["event"] == "push failed: fatal: https://x:[redacted]@host"
    assert first["args_seen"] == ["[redacted]"]
    assert "RuntimeError: login refused for [redacted]" in str(second["exception"])
    for secret in secrets:
        assert secret not in out.getvalue()
