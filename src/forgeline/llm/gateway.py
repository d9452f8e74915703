"""Models are configuration: a chain of ``provider:model`` strings per role.

``openai:gpt-4o-mini``, ``anthropic:claude-...``, ``openrouter:...``, ``ollama:...`` and the
other pydantic-ai provider prefixes are resolved by pydantic-ai (their API keys come from
the environment). A ``[providers.NAME]`` table with a ``base_url`` makes ``NAME:model`` an
OpenAI-compatible endpoint (vLLM, llama.cpp's server, a proxy). ``local:<name>`` runs a
GGUF model on this machine (forgeline.llm.local). ``function:package.module:attribute``
loads a pydantic-ai ``Model`` (or a zero-argument factory of one) from Python: scripted
models for tests and dry runs.

A chain of several models becomes pydantic-ai's ``FallbackModel``: a call that fails
(HTTP errors, timeouts, rate limits once the client's own retries with backoff are spent,
a malformed response) goes to the next model. ``ModelRegistry.metered`` wraps a role's
chain for one stage run (usage, cache, budget, loops: forgeline.llm.metered).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from typing import cast

from openai import AsyncOpenAI
from pydantic_ai.exceptions import ModelAPIError, UnexpectedModelBehavior
from pydantic_ai.models import Model, infer_model
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from forgeline.config import MODEL_ROLES, ModelRole, Settings
from forgeline.errors import ConfigError
from forgeline.llm.local import local_model
from forgeline.llm.metered import Meter, MeteredModel


def build_model(spec: str, settings: Settings | None = None) -> Model:
    spec = spec.strip()
    settings = settings or Settings()
    provider, _, name = spec.partition(":")
    if provider in settings.providers:
        return _compatible_model(provider, name, settings)
    if spec.startswith("function:"):
        return _load_function_model(spec.removeprefix("function:"))
    if spec.startswith("local:"):
        return local_model(spec.removeprefix("local:"))
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


def _compatible_model(provider: str, name: str, settings: Settings) -> Model:
    config = settings.providers[provider]
    if not name:
        raise ConfigError(f"model {provider}: has no model name: write {provider}:<model>")
    key = config.api_key.get_secret_value() if config.api_key else None
    if config.api_key_env:
        key = os.environ.get(config.api_key_env)
        if not key:
            raise ConfigError(
                f"provider {provider!r} reads its API key from ${config.api_key_env}, "
                "which is not set"
            )
    client = AsyncOpenAI(
        base_url=config.base_url,
        api_key=key or "not-needed",
        max_retries=settings.model_retries,
        timeout=settings.model_timeout,
    )
    return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))


def build_chain(specs: list[str], settings: Settings | None = None) -> Model:
    """One model, or a ``FallbackModel`` trying each in order."""
    if not specs:
        raise ConfigError("an empty model chain: name at least one provider:model")
    models = [build_model(spec, settings) for spec in specs]
    if len(models) == 1:
        return models[0]
    return FallbackModel(*models, fallback_on=(ModelAPIError, UnexpectedModelBehavior))


def has_local(specs: Iterable[str]) -> bool:
    """Whether a chain of model specs has a local model (``local:NAME``) in it."""
    return any(spec.strip().startswith("local:") for spec in specs)


async def close_models(models: Iterable[Model]) -> None:
    """Close each distinct OpenAI-compatible client in ``models`` (fallbacks included)."""
    clients: dict[int, AsyncOpenAI] = {}
    pending = list(models)
    while pending:
        model = pending.pop()
        if isinstance(model, FallbackModel):
            pending.extend(model.models)
        elif isinstance(model, OpenAIChatModel):
            clients.setdefault(id(model.client), model.client)
    for client in clients.values():
        await client.close()


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
    """The model chain for each role, built once from settings (or given in tests)."""

    def __init__(
        self,
        models: Mapping[ModelRole, Model],
        specs: Mapping[ModelRole, str] | None = None,
        *,
        settings: Settings | None = None,
        built: dict[str, Model] | None = None,
    ):
        self._models = dict(models)
        self._specs = dict(specs or {})
        self._settings = settings
        self._built: dict[str, Model] = {} if built is None else built
        """Chains built from specs, by spec: shared with the registries ``with_chains``
        derives, so each is built once and closed once."""
        self._derived: dict[tuple[tuple[str, str], ...], ModelRegistry] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """Every role's chain; with none configured at all, the offline local model."""
        fallback = [f"local:{settings.local_model}"]
        built: dict[str, Model] = {}
        models: dict[ModelRole, Model] = {}
        specs: dict[ModelRole, str] = {}
        for role in MODEL_ROLES:
            chain = settings.models.for_role(role) or fallback
            spec = ", ".join(chain)
            if spec not in built:
                built[spec] = build_chain(chain, settings)
            models[role] = built[spec]
            specs[role] = spec
        return cls(models, specs, settings=settings, built=built)

    def with_chains(self, chains: Mapping[str, str]) -> ModelRegistry:
        """This registry with ``chains`` (role -> ``a, b``) in place of those roles'
        chains: the models of a task's agent (``TaskState.models``). Each chain is built
        once (``ConfigError`` when it cannot be) and the registry kept for the next task
        with the same chains."""
        chains = {r: c for r, c in chains.items() if r in MODEL_ROLES and c != self._specs.get(r)}
        if not chains:
            return self
        key = tuple(sorted(chains.items()))
        derived = self._derived.get(key)
        if derived is None:
            models, specs = dict(self._models), dict(self._specs)
            for role, spec in chains.items():
                if spec not in self._built:
                    parts = [part.strip() for part in spec.split(",") if part.strip()]
                    self._built[spec] = build_chain(parts, self._settings)
                models[cast(ModelRole, role)] = self._built[spec]
                specs[cast(ModelRole, role)] = spec
            derived = ModelRegistry(models, specs, settings=self._settings, built=self._built)
            self._derived[key] = derived
        return derived

    def __getitem__(self, role: ModelRole) -> Model:
        return self._models[role]

    def spec(self, role: ModelRole) -> str:
        """The configured chain as written (``a, b``), or the model's own name."""
        return self._specs.get(role) or self._models[role].model_name

    def is_local(self, role: ModelRole) -> bool:
        """Whether ``role``'s chain has a local model (``local:``) in it."""
        return has_local(self.spec(role).split(","))

    async def aclose(self) -> None:
        """Close the HTTP connections the chains' OpenAI-compatible clients hold open."""
        await close_models([*self._models.values(), *self._built.values()])

    def metered(self, role: ModelRole, meter: Meter) -> MeteredModel:
        return MeteredModel(self[role], self.spec(role), meter)
