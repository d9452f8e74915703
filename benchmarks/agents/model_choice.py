"""The model a harness drives: the one forgeline's coder would use.

``--model`` names it (``provider:model``, ``local:...``, ``function:...``); without it,
forgeline's own choice: ``--config``, the environment, else the offline local model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic_ai.models import Model

from forgeline.config import load_settings
from forgeline.llm.gateway import build_chain


def harness_model(model: str | None, config: Path | None) -> tuple[Model, str, float]:
    """The model, its label and forgeline's ``model_timeout`` for one request."""
    with tempfile.TemporaryDirectory() as nowhere:
        settings = load_settings(Path(nowhere), config)
    chain = (
        [model] if model else settings.models.for_role("coder") or [f"local:{settings.local_model}"]
    )
    return build_chain(chain, settings), ", ".join(chain), settings.model_timeout
