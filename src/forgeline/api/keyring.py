"""API keys on their way in and out: made, shown once, checked, revoked.

A key is ``flk_<id>_<secret>``: the id finds its record (``core.keys``, the ``apikeys``
stream), and only the sha256 digest of the whole key is recorded, so the store never
holds a key. 32 random bytes make a digest enough (nothing to guess), and comparing
digests takes the same time whatever they share. The CLI (``forgeline keys``) and the
server (``/api/keys``) both go through ``Keyring``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime

from forgeline.core import keys
from forgeline.core.events import KEYS_STREAM, utcnow
from forgeline.core.keys import CreateKey, Keys, KeyState, RevokeKey, Scope
from forgeline.store.base import EventStore

PREFIX = "flk_"
KEY = re.compile(r"^flk_(?P<id>[a-z0-9]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Keyring:
    """The server's API keys in ``store``."""

    def __init__(self, store: EventStore, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock
        self._folded = Keys()

    async def keys(self) -> Keys:
        """Every key, revoked ones too (read again each time: another process, say
        ``forgeline keys revoke``, may have changed them)."""
        newer = await self.store.read_stream(KEYS_STREAM, after_version=self._folded.version)
        for event in newer:
            self._folded = keys.evolve(self._folded, event)
        return self._folded

    async def create(self, name: str, scope: Scope) -> tuple[KeyState, str]:
        """A new key: its record, and the key itself (shown once, never stored)."""
        key_id = secrets.token_hex(6)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        command = CreateKey(
            key_id=key_id, name=name, scope=scope, digest=digest(key), at=self.clock()
        )
        await self.store.append(KEYS_STREAM, keys.decide(await self.keys(), command))
        return (await self.keys()).keys[key_id], key

    async def revoke(self, key_id: str) -> KeyState:
        command = RevokeKey(key_id=key_id, at=self.clock())
        events = keys.decide(await self.keys(), command)
        if events:
            await self.store.append(KEYS_STREAM, events)
        return (await self.keys()).keys[key_id]

    async def verify(self, key: str) -> KeyState | None:
        """The active key's record, or None for anything else (malformed, unknown,
        revoked: the caller need not learn which)."""
        match = KEY.match(key)
        if match is None:
            return None
        found = (await self.keys()).keys.get(match["id"])
        if found is None or not found.active:
            return None
        return found if hmac.compare_digest(found.digest, digest(key)) else None
