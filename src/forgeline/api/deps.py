"""The routes' dependencies (``Annotated`` aliases): the server, and the caller's key at
the scope a route needs.

Every route but ``/api/health`` and ``/api/ready`` takes a key: ``Authorization: Bearer
<key>``. No key, or one that is malformed, unknown or revoked: 401; a key whose scope is
below the route's: 403; past the key's rate limit: 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from forgeline.api.context import Server
from forgeline.api.errors import ApiError
from forgeline.core.keys import KeyState, Scope, allows

bearer = HTTPBearer(auto_error=False, description="An API key: `forgeline keys create`.")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def server(request: Request) -> Server:
    found: Server = request.app.state.server
    return found


ServerDep = Annotated[Server, Depends(server)]


async def check_key(server: Server, token: str | None) -> KeyState:
    """The key ``token`` names, allowed by its rate limit (``ApiError`` otherwise)."""
    if not token:
        raise ApiError(
            401,
            "send your API key as 'Authorization: Bearer <key>' "
            "(`forgeline keys create` makes one)",
            headers=CHALLENGE,
        )
    key = await server.keyring.verify(token.strip())
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers=CHALLENGE)
    wait = server.limiter.take(key.key_id)
    if wait is not None:
        raise ApiError(
            429,
            f"more than {server.limiter.per_minute} requests a minute with this key: "
            f"try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    return key


def granted(key: KeyState, needed: Scope) -> KeyState:
    if not allows(key.scope, needed):
        raise ApiError(
            403, f"this needs a key with the {needed} scope; this key's scope is {key.scope}"
        )
    return key


def scope(needed: Scope) -> Callable[..., Awaitable[KeyState]]:
    async def caller(
        server: ServerDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> KeyState:
        token = credentials.credentials if credentials is not None else None
        return granted(await check_key(server, token), needed)

    return caller


ReadKey = Annotated[KeyState, Depends(scope("read"))]
WriteKey = Annotated[KeyState, Depends(scope("write"))]
AdminKey = Annotated[KeyState, Depends(scope("admin"))]
