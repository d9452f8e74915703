"""Settings: ``forgeline.toml`` in the workspace (or ``--config``), then environment.

Environment variables override the file: ``FORGELINE_<FIELD>`` and, for nested tables,
``FORGELINE_<TABLE>__<FIELD>`` (``FORGELINE_MODELS__DEFAULT=openai:gpt-4o-mini``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from forgeline.errors import ConfigError

Role = Literal["planner", "architect", "coder", "fixer", "reviewer"]
ROLES: tuple[Role, ...] = ("planner", "architect", "coder", "fixer", "reviewer")
CONFIG_FILE = "forgeline.toml"


class ModelsConfig(BaseModel):
    """A ``provider:model`` string per role; a role without one uses ``default``."""

    model_config = ConfigDict(extra="forbid")

    default: str | None = None
    planner: str | None = None
    architect: str | None = None
    coder: str | None = None
    fixer: str | None = None
    reviewer: str | None = None

    def for_role(self, role: Role) -> str | None:
        value: str | None = getattr(self, role)
        return value or self.default


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FORGELINE_", env_nested_delimiter="__", extra="forbid"
    )

    models: ModelsConfig = Field(default_factory=ModelsConfig)
    store: str | None = None
    """Event store URL; default ``sqlite:///<workspace>/.forgeline/forgeline.db``."""
    mode: Literal["event", "sequential"] = "event"
    max_fix_rounds: int = Field(3, ge=0, le=50)
    max_review_rounds: int = Field(3, ge=0, le=50)
    output_retries: int = Field(3, ge=0, le=20)
    """How often a role may answer with invalid output before its stage fails."""
    require_sandbox: bool = False
    """Refuse to run untrusted code without the sandbox, even with unsafe_no_sandbox."""
    unsafe_no_sandbox: bool = False
    """Run untrusted code as plain processes when no sandbox is available (loudly)."""
    test_timeout: float = Field(300, gt=0)
    deploy_timeout: float = Field(60, gt=0)

    def store_url(self, workspace: Path) -> str:
        return self.store or f"sqlite:///{workspace / '.forgeline' / 'forgeline.db'}"


class _FileSource(PydanticBaseSettingsSource):
    """Values read from forgeline.toml, below the environment and the flags."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.data


def load_settings(workspace: Path, config: Path | None = None, **overrides: Any) -> Settings:
    """Flags (``overrides``) beat the environment, which beats the config file."""
    path = config or workspace / CONFIG_FILE
    data: dict[str, Any] = {}
    if config is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc

    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _FileSource(settings_cls, data))

    try:
        return FileSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration ({path}): {problems}") from exc
