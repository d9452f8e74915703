"""Structured logs: JSON lines off a terminal, task ids bound, secrets masked."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from forgeline.config import Settings
from forgeline.observability.config import TelemetryConfig
from forgeline.observability.logs import bind_task, configure_logging, get_logger, secrets_of
from forgeline.tools.config import GitHubConfig


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_the_task_bound() -> None:
    out = io.StringIO()  # not a terminal
    configure_logging(TelemetryConfig(), stream=out)
    log = get_logger()
    with bind_task("t1", stage="coder"):
        log.info("stage.started", trigger="plan.item.dispatched")
    log.warning("idle")

    first, second = lines(out)
    assert first["event"] == "stage.started"
    assert first["task_id"] == "t1" and first["correlation_id"] == "t1"
    assert first["stage"] == "coder" and first["level"] == "info"
    assert "timestamp" in first
    assert "task_id" not in second


def test_level_and_console_format() -> None:
    out = io.StringIO()
    configure_logging(TelemetryConfig(log_level="warning", log_format="console"), stream=out)
    get_logger().info("hidden")
    get_logger().error("shown", code=3)
    text = out.getvalue()
    assert "hidden" not in text
    assert "shown" in text and "code=3" in text and not text.lstrip().startswith("{")


def test_secrets_are_masked() -> None:
    settings = Settings(
        github=GitHubConfig(token=SecretStr("ghp_secret_value_1234"), token_env="MY_GH"),
    )
    secrets = secrets_of(settings, environ={"MY_GH": "env-token-5678"})
    assert set(secrets) >= {"ghp_secret_value_1234", "env-token-5678"}
    out = io.StringIO()
    configure_logging(TelemetryConfig(), secrets=secrets, stream=out)
    get_logger().info(
        "push failed", output="fatal: https://x:ghp_secret_value_1234@host", args=["env-token-5678"]
    )
    [line] = lines(out)
    assert line["output"] == "fatal: https://x:***@host"
    assert line["args"] == ["***"]
    assert "ghp_secret" not in out.getvalue()
