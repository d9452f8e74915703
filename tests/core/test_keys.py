"""API keys, pure: scopes ordered, keys created and revoked as events."""

from __future__ import annotations

import pytest

from forgeline.core import keys
from forgeline.core.events import Event
from forgeline.core.keys import CreateKey, Keys, RevokeKey, allows
from forgeline.errors import InvalidRequestError
from tests.core.given import AT


def test_scopes_are_ordered() -> None:
    assert allows("admin", "write") and allows("write", "read") and allows("read", "read")
    assert not allows("read", "write") and not allows("write", "admin")


def test_a_key_is_created_with_its_digest_only_and_revoked_once() -> None:
    events: list[Event] = []

    def apply(new: list) -> None:  # type: ignore[type-arg]
        for e in new:
            events.append(
                Event(**e.model_dump(), version=len(events) + 1, position=len(events) + 1)
            )

    apply(keys.decide(Keys(), CreateKey(key_id="k1", name="ci", scope="write", digest="d", at=AT)))
    state = keys.fold(events)
    assert state.keys["k1"].active and state.keys["k1"].digest == "d"
    with pytest.raises(InvalidRequestError, match="exists already"):
        keys.decide(state, CreateKey(key_id="k1", name="x", scope="read", digest="e", at=AT))
    apply(keys.decide(state, RevokeKey(key_id="k1", at=AT)))
    assert not keys.fold(events).keys["k1"].active
    assert keys.decide(keys.fold(events), RevokeKey(key_id="k1", at=AT)) == []
    with pytest.raises(InvalidRequestError, match="no key"):
        keys.decide(state, RevokeKey(key_id="k9", at=AT))
    with pytest.raises(InvalidRequestError, match="key name"):
        keys.decide(Keys(), CreateKey(key_id="k2", name="", scope="read", digest="d", at=AT))
