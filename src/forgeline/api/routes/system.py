"""Health and readiness (``public``: no key), the caller's own key and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from forgeline.api.deps import ReadKey, ServerDep
from forgeline.api.errors import KEYED, ApiError, answers
from forgeline.api.schemas import Health, WhoAmI
from forgeline.core.events import KEYS_STREAM
from forgeline.errors import StoreError

public = APIRouter(tags=["system"])
router = APIRouter(tags=["system"], responses=answers(*KEYED))


@public.get("/api/health", response_model=Health)
async def health() -> Health:
    """The server answers (no key needed)."""
    return Health(status="ok")


@public.get("/api/ready", response_model=Health, responses=answers(503))
async def ready(server: ServerDep) -> Health:
    """The store answers too (no key needed)."""
    try:
        await server.runtime.store.stream_version(KEYS_STREAM)
    except StoreError as exc:
        raise ApiError(503, f"the event store does not answer: {exc}") from None
    return Health(status="ready")


@router.get("/api/me", response_model=WhoAmI)
async def me(key: ReadKey) -> WhoAmI:
    """The key this request was made with."""
    return WhoAmI(id=key.key_id, name=key.name, scope=key.scope)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus' format"}},
)
async def metrics(server: ServerDep, key: ReadKey) -> Response:
    """Tasks by status, stage durations, clarification requests, model calls, tokens and
    cost, sandbox CPU seconds; computed from the store."""
    return Response(await server.metrics.scrape(), media_type=CONTENT_TYPE_LATEST)
