"""Settings of traces and logs: the ``[telemetry]`` table."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class TelemetryConfig(BaseModel):
    """Traces and logs: the ``[telemetry]`` table."""

    model_config = ConfigDict(extra="forbid")

    otlp_endpoint: str | None = None
    """Export traces over OTLP/HTTP to this URL (``http://collector:4318/v1/traces``);
    unset: no tracing."""
    otlp_headers: dict[str, SecretStr] = Field(default_factory=dict)
    service_name: str = "forgeline"
    log_format: Literal["auto", "json", "console"] = "auto"
    """``auto``: JSON lines when stderr is not a terminal."""
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    """The lowest level of forgeline's log lines (``info`` and ``debug`` for a service:
    stage runs and their outcomes)."""
