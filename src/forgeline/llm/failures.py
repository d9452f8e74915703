"""What a failed model call says: which provider failed, where, and how.

pydantic-ai reports a provider's failure as a ``ModelAPIError`` (by category: could not
connect or timed out, an HTTP status, a rate limit ...) and, when every model of a
fallback chain failed, as a ``FallbackExceptionGroup`` of them. ``provider_failure``
turns either into a ``ProviderFailed`` naming each model and where it was asked (an
OpenAI-compatible client's base URL), so a stage fails saying "could not reach the model
provider ... at http://..." rather than that the model's output was invalid.
"""

from __future__ import annotations

from pydantic_ai.exceptions import (
    FallbackExceptionGroup,
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelTimeoutError,
    UnexpectedModelBehavior,
)
from pydantic_ai.models import Model
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.wrapper import WrapperModel

from forgeline.errors import ForgelineError

__all__ = ["ProviderFailed", "provider_failure"]


class ProviderFailed(ForgelineError):
    """A model provider could not be reached or refused the call (every model of the
    chain, for a chain)."""


Failure = ModelAPIError | UnexpectedModelBehavior


def provider_failure(model: Model | None, exc: BaseException) -> ProviderFailed | None:
    """``exc``, raised by a call to ``model`` (one model or a chain; None: unknown), as a
    ``ProviderFailed``; None when it is not a provider's failure. (An unreadable answer
    counts: raised by a model's own call, it is the provider's, not the output's.)"""
    failures = list(exc.exceptions) if isinstance(exc, FallbackExceptionGroup) else [exc]
    if not failures or not all(isinstance(f, Failure) for f in failures):
        return None
    places = _places(model) if model is not None else {}
    lines = [_describe(f, places) for f in failures if isinstance(f, Failure)]
    if len(lines) == 1:
        return ProviderFailed(lines[0])
    return ProviderFailed("every model of the chain failed: " + "; ".join(lines))


def _describe(failure: Failure, places: dict[str, str]) -> str:
    if isinstance(failure, UnexpectedModelBehavior):
        provider = "the model provider" + (f" at {', '.join(places.values())}" if places else "")
        return f"{provider} gave an answer that could not be read: {failure.message.strip()}"
    where = places.get(failure.model_name)
    provider = f"the model provider for {failure.model_name}" + (f" at {where}" if where else "")
    if isinstance(failure, ModelTimeoutError):
        how = "did not answer in time"
    elif isinstance(failure, ModelConnectionError):
        how = "could not be reached"
    elif isinstance(failure, ModelHTTPError):
        how = f"answered HTTP {failure.status_code}"
    else:
        how = "failed"
    detail = failure.message.strip()
    return f"{provider} {how}" + (f": {detail}" if detail else "")


def _places(model: Model) -> dict[str, str]:
    """Model name -> where it is asked (an OpenAI-compatible base URL, else its system)."""
    places: dict[str, str] = {}
    pending = [model]
    while pending:
        current = pending.pop()
        if isinstance(current, FallbackModel):
            pending.extend(current.models)
        elif isinstance(current, WrapperModel):
            pending.append(current.wrapped)
        elif isinstance(current, OpenAIChatModel):
            places.setdefault(current.model_name, str(current.client.base_url).rstrip("/"))
        else:
            places.setdefault(current.model_name, current.system)
    return places
