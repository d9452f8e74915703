"""Schema versions: the store records which numbered migrations it has applied and brings
an older database up to date in place when it is opened.

Each backend lists its migrations (``sqlite.MIGRATIONS``, ``postgres.MIGRATIONS``), both
with the same numbers and meaning. Migration 1 is the schema forgeline had before it
recorded versions; its statements only create what is missing, so a database from then
(which has no ``schema_version`` table) is recognised as version 0 and upgraded by
applying 1 onwards. Pending migrations run in one transaction, under the lock appends
take, each recorded in ``schema_version`` as it is applied: a failure leaves the database
as it was, and several processes opening at once apply each migration once.

A schema change is a new migration at the end of both lists (never an edit of an old one).
A database newer than this forgeline (one a newer forgeline migrated) is refused, since
this code would misread it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forgeline.errors import StoreError


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


def check(migrations: Sequence[Migration]) -> Sequence[Migration]:
    """``migrations`` if they are numbered 1, 2, ... in order (a module-level assertion)."""
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise AssertionError(f"migrations must be numbered 1, 2, ... in order: {numbers}")
    return migrations


def pending(found: int, migrations: Sequence[Migration], where: str) -> list[Migration]:
    """The migrations a database at version ``found`` lacks; refuses a newer database."""
    latest = migrations[-1].version
    if found > latest:
        raise StoreError(
            f"the event store at {where} has schema version {found}, but this forgeline knows"
            f" versions up to {latest}: a newer forgeline has upgraded it. Use that version"
            " (or a later one) of forgeline with this store"
        )
    return [m for m in migrations if m.version > found]


def missing_store(where: str) -> StoreError:
    """The error of opening, without creating, a store that does not exist."""
    return StoreError(
        f"no forgeline store at {where}: nothing has been recorded there yet."
        ' `forgeline run "what to build"` creates it; to read another store, pass its'
        " --workspace or --store"
    )
