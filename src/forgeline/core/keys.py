"""The server's API keys, pure: created with a scope, revoked, never stored in clear.

The ``apikeys`` stream holds ``key.created`` (an id, a name, a scope and the sha256
digest of the key) and ``key.revoked``; ``fold`` gives every key's state. Scopes are
ordered: ``read`` < ``write`` < ``admin``, and a key may do what its scope or a lower one
allows (``allows``). Making the key itself and its digest is the edge's job
(``forgeline.api.keyring``): time and ids arrive as data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import Field

from forgeline.core.events import KEYS_STREAM, Event, Frozen, KeyCreated, KeyRevoked, NewEvent
from forgeline.errors import InvalidRequestError

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
NAME = re.compile(r"^[\w .@-]{1,64}$")


def allows(granted: Scope, needed: Scope) -> bool:
    """Whether a key of scope ``granted`` may do what needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


class KeyState(Frozen):
    key_id: str
    name: str
    scope: Scope
    digest: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Keys(Frozen):
    keys: dict[str, KeyState] = Field(default_factory=dict)
    version: int = 0


def evolve(keys: Keys, event: Event) -> Keys:
    data = event.data
    found = dict(keys.keys)
    match data:
        case KeyCreated():
            found[data.key_id] = KeyState(
                key_id=data.key_id,
                name=data.name,
                scope=data.scope,
                digest=data.digest,
                created_at=event.created_at,
            )
        case KeyRevoked() if data.key_id in found:
            found[data.key_id] = found[data.key_id].model_copy(
                update={"revoked_at": event.created_at}
            )
        case _:
            pass
    return Keys(keys=found, version=event.version)


def fold(events: Iterable[Event]) -> Keys:
    keys = Keys()
    for event in events:
        keys = evolve(keys, event)
    return keys


class CreateKey(Frozen):
    key_id: str
    name: str
    scope: Scope
    digest: str
    at: datetime


class RevokeKey(Frozen):
    key_id: str
    at: datetime


def decide(keys: Keys, command: CreateKey | RevokeKey) -> list[NewEvent]:
    match command:
        case CreateKey():
            if not NAME.match(command.name):
                raise InvalidRequestError(
                    f"key name {command.name!r}: use 1-64 letters, digits, spaces, '.', '_', "
                    "'@' or '-'"
                )
            if command.key_id in keys.keys:
                raise InvalidRequestError(f"a key {command.key_id!r} exists already")
            data: KeyCreated | KeyRevoked = KeyCreated(
                key_id=command.key_id,
                name=command.name,
                scope=command.scope,
                digest=command.digest,
            )
        case RevokeKey():
            key = keys.keys.get(command.key_id)
            if key is None:
                raise InvalidRequestError(
                    f"no key {command.key_id!r}: `forgeline keys list` shows them"
                )
            if not key.active:
                return []  # revoked already: nothing changes
            data = KeyRevoked(key_id=command.key_id)
    return [
        NewEvent(
            stream_id=KEYS_STREAM,
            data=data,
            correlation_id=KEYS_STREAM,
            actor="user",
            created_at=command.at,
        )
    ]
