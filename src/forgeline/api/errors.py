"""Every failure as JSON ``{"error": ..., "detail": ...}`` (``ErrorOut``) with its status,
never a stack trace: forgeline's own errors by kind, validation errors naming the field,
and anything unexpected as a 500 that says only where to look (the server's log).

``answers(*statuses)`` is how a router declares the failures its routes give, so the
OpenAPI schema lists each with this body (the schema test holds the server to it)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from forgeline.errors import (
    ConfigError,
    ForgelineError,
    InvalidRequestError,
    StoreError,
    TaskNotFoundError,
    WorkspaceError,
)
from forgeline.redaction import redact

log = logging.getLogger("forgeline.api")

PHRASES = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "too large",
    415: "unsupported type",
    422: "invalid input",
    429: "too many requests",
    500: "internal error",
    503: "unavailable",
}


WHY = {
    400: "The input names something unusable (a workspace outside the root, a bad path).",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's scope is too low for this route.",
    404: "No such task, file, agent or key.",
    409: "The task is not in a state that allows this.",
    413: "The request body, or an uploaded file, is too large.",
    415: "An upload of a type that is not allowed, or not text.",
    422: "The input is malformed: `fields` names each wrong field.",
    429: "Past the key's rate limit: `Retry-After` says when to try again.",
    503: "The event store does not answer.",
}

UNPARSABLE = "There was an error parsing the body"
"""FastAPI's 400 for a body it cannot decode: malformed input like any other (422)."""
UNPARSED = "cannot be parsed: not UTF-8 JSON, or a broken form"

KEYED = (401, 429, 503)
"""What every route that takes a key may answer: the key checked against the store."""


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """The body of every failure."""

    error: str
    detail: str
    fields: list[FieldError] | None = None
    """For 422: each wrong field (``budget.tokens``) and what is wrong with it."""


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a router whose routes fail with ``statuses``."""
    return {s: {"model": ErrorOut, "description": WHY[s]} for s in sorted(set(statuses))}


class ApiError(Exception):
    """An answer other than success, raised anywhere in a route."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def error_body(status: int, detail: str, fields: list[FieldError] | None = None) -> dict[str, Any]:
    body = ErrorOut(error=PHRASES.get(status, "error"), detail=redact(detail), fields=fields)
    return body.model_dump(exclude_none=True)


def respond(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, detail), status_code=status, headers=headers)


def status_of(exc: ForgelineError) -> int:
    match exc:
        case TaskNotFoundError():
            return 404
        case StoreError():
            return 503
        case InvalidRequestError() | WorkspaceError() | ConfigError():
            return 400
        case _:
            return 400


def field_of(location: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "budget", "tokens")`` -> ``budget.tokens``."""
    parts = [str(p) for p in location]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(exc.status, exc.detail, exc.headers)

    @app.exception_handler(ForgelineError)
    async def forgeline_error(request: Request, exc: ForgelineError) -> JSONResponse:
        return respond(status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            FieldError(field=field_of(e.get("loc", ())), message=redact(str(e.get("msg", ""))))
            for e in exc.errors()
        ]
        text = "; ".join(f"{f.field}: {f.message}" for f in fields)
        return JSONResponse(error_body(422, text, fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == UNPARSABLE:
            field = FieldError(field="body", message=UNPARSED)
            return JSONResponse(error_body(422, "body: " + field.message, [field]), 422)
        return respond(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return respond(500, "the server failed on this request; its log says why")
