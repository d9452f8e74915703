"""Models are configuration: a ``provider:model`` string per role becomes a model.

``openai:gpt-4o-mini``, ``anthropic:claude-...``, ``openrouter:...`` and the other
pydantic-ai provider prefixes are resolved by pydantic-ai (their API keys come from the
environment). ``function:package.module:attribute`` loads a pydantic-ai ``Model`` (or a
zero-argument factory of one) from Python: scripted models for tests and dry runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from pydantic_ai.models import Model, infer_model

from forgeline.config import ROLES, Role, Settings
from forgeline.errors import ConfigError


def build_model(spec: str) -> Model:
    spec = spec.strip()
    if spec.startswith("function:"):
        return _load_function_model(spec.removeprefix("function:"))
    if ":" not in spec:
        raise ConfigError(
            f"model {spec!r} has no provider: write provider:model, e.g. openai:gpt-4o-mini"
        )
    try:
        return infer_model(spec)
    except ImportError as exc:
        raise ConfigError(
            f"model {spec!r} needs an extra package: {exc}. Install it with "
            f"pip install 'pydantic-ai-slim[{spec.split(':', 1)[0]}]'"
        ) from exc
    except Exception as exc:  # pydantic-ai raises UserError/ValueError for unknown names
        raise ConfigError(f"cannot use model {spec!r}: {exc}") from exc


def _load_function_model(target: str) -> Model:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"function model {target!r}: write function:package.module:attribute")
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"function model {target!r} cannot be loaded: {exc}") from exc
    if not isinstance(obj, Model) and callable(obj):
        obj = obj()
    if not isinstance(obj, Model):
        raise ConfigError(f"function model {target!r} is not a pydantic-ai Model")
    return obj


class ModelRegistry:
    """The model for each role, built once from settings (or given directly in tests)."""

    def __init__(self, models: Mapping[Role, Model]) -> None:
        self._models = dict(models)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        missing = [role for role in ROLES if not settings.models.for_role(role)]
        if missing:
            raise ConfigError(
                f"no model configured for {', '.join(missing)}: set [models] default = "
                '"provider:model" in forgeline.toml, or FORGELINE_MODELS__DEFAULT'
            )
        built: dict[str, Model] = {}
        models: dict[Role, Model] = {}
        for role in ROLES:
            spec = settings.models.for_role(role)
            assert spec is not None
            if spec not in built:
                built[spec] = build_model(spec)
            models[role] = built[spec]
        return cls(models)

    def __getitem__(self, role: Role) -> Model:
        return self._models[role]
