"""``/api/keys``: API keys, for admin keys only. A new key is shown once, in the answer
that creates it; only its digest is recorded."""

from __future__ import annotations

from fastapi import APIRouter, Response

from forgeline.api.deps import AdminKey, ServerDep
from forgeline.api.errors import KEYED, ApiError, answers
from forgeline.api.schemas import KeyIn, KeyOut, NewKeyOut, key_out

router = APIRouter(prefix="/api/keys", tags=["keys"], responses=answers(*KEYED, 403, 404, 413, 422))


@router.get("", response_model=list[KeyOut])
async def list_keys(server: ServerDep, key: AdminKey) -> list[KeyOut]:
    """Every key, oldest first: name, scope, when made, whether revoked; never a secret."""
    found = await server.keyring.keys()
    return [key_out(k) for k in sorted(found.keys.values(), key=lambda k: k.created_at)]


@router.post("", response_model=NewKeyOut, status_code=201)
async def create_key(body: KeyIn, server: ServerDep, key: AdminKey) -> NewKeyOut:
    """Make a key; the answer is the only place its secret is ever shown."""
    state, secret = await server.keyring.create(body.name, body.scope)
    return NewKeyOut(**key_out(state).model_dump(), key=secret)


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: str, server: ServerDep, key: AdminKey) -> Response:
    """Revoke a key: requests with it get 401 from now on."""
    if key_id not in (await server.keyring.keys()).keys:
        raise ApiError(404, f"no key {key_id!r}")
    await server.keyring.revoke(key_id)
    return Response(status_code=204)
