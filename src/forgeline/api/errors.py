"""Every failure as JSON ``{"error": ..., "detail": ...}`` with its status, never a
stack trace: forgeline's own errors by kind, validation errors naming the field, and
anything unexpected as a 500 that says only where to look (the server's log)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


class ApiError(Exception):
    """An answer other than success, raised anywhere in a route."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def error_body(status: int, detail: Any) -> dict[str, Any]:
    return {"error": PHRASES.get(status, "error"), "detail": detail}


def respond(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    if isinstance(detail, str):
        detail = redact(detail)
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
            {"field": field_of(e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        text = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse({**error_body(422, redact(text)), "fields": fields}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return respond(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return respond(500, "the server failed on this request; its log says why")
