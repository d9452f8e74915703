"""Settings of the server: the ``[server]`` table."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

UPLOAD_TYPES: tuple[str, ...] = (
    ".py", ".pyi", ".txt", ".md", ".rst", ".toml", ".cfg", ".ini", ".json", ".yaml", ".yml",
    ".csv", ".tsv", ".html", ".css", ".js", ".ts", ".sql", ".xml", ".svg", ".env.example",
    ".gitignore", "Makefile", "Dockerfile", "LICENSE",
)  # fmt: skip


class ServerConfig(BaseModel):
    """``forgeline serve``: where it listens and what it lets through."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    """Loopback unless told otherwise: a key is needed for every route, but a server on
    all interfaces should sit behind TLS."""
    port: int = Field(8000, ge=1, le=65535)
    cors_origins: tuple[str, ...] = ()
    """Origins (``https://host:port``) whose pages may call the API; none by default."""
    rate_limit: int = Field(600, ge=0)
    """Requests per minute per key (bursts up to that many); 0: no limit."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """The largest request body, uploads aside (413 beyond)."""
    max_upload_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """The largest upload request (all its files)."""
    max_upload_files: int = Field(200, ge=1)
    max_file_bytes: int = Field(1024 * 1024, ge=1)
    """The largest single uploaded file, and the most of a file the API shows."""
    upload_types: tuple[str, ...] = UPLOAD_TYPES
    """What may be uploaded: file name endings (or whole names); text only."""
