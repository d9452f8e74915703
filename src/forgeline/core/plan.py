"""The plan as a DAG (note 004's handler-based planner), as pure functions.

Each plan item is a node with a kind (``Processing``, ``ToolCall``, ``Clarification``)
and a status (``Planned``, ``Running``, ``Completed``, ``NeedsClarification``; an item
does not fail on its own, its task does). Items whose dependencies are all completed are
*ready* and may run concurrently; a ready ``Clarification`` item pauses the plan until it
is answered.
"""

from __future__ import annotations

from enum import StrEnum

from forgeline.core.events import Frozen, NodeKind, PlanItem

__all__ = ["ItemState", "ItemStatus", "NodeKind", "PlanError", "repair_plan", "validate_plan"]


class ItemStatus(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    COMPLETED = "completed"
    NEEDS_CLARIFICATION = "needs_clarification"


class ItemState(Frozen):
    item: PlanItem
    status: ItemStatus = ItemStatus.PLANNED
    answer: str | None = None
    commit: str | None = None


class PlanError(ValueError):
    """A plan that cannot be executed: unknown dependency, a cycle, duplicate ids."""


def validate_plan(items: tuple[PlanItem, ...]) -> None:
    """Raise ``PlanError`` unless ``items`` form a non-empty DAG with unique ids."""
    if not items:
        raise PlanError("the plan has no items")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise PlanError(f"plan item ids repeat: {', '.join(dupes)}")
    known = set(ids)
    for item in items:
        missing = [d for d in item.depends_on if d not in known]
        if missing:
            raise PlanError(f"plan item {item.id!r} depends on unknown {', '.join(missing)}")
    # Kahn's algorithm: anything left over sits on a cycle.
    remaining = {item.id: set(item.depends_on) for item in items}
    while True:
        free = [i for i, deps in remaining.items() if not deps]
        if not free:
            break
        for i in free:
            del remaining[i]
        for deps in remaining.values():
            deps.difference_update(free)
    if remaining:
        raise PlanError(f"plan items form a cycle: {', '.join(sorted(remaining))}")
    # Items that may run at the same time must not write the same file, or one would
    # overwrite the other's work.
    ancestors = _ancestors(items)
    writers: dict[str, list[str]] = {}
    for item in items:
        for path in item.files:
            for other in writers.get(path, []):
                if other not in ancestors[item.id] and item.id not in ancestors[other]:
                    raise PlanError(
                        f"plan items {other!r} and {item.id!r} both write {path} and may run "
                        f"at the same time: make one depend on the other"
                    )
            writers.setdefault(path, []).append(item.id)


def repair_plan(items: tuple[PlanItem, ...]) -> tuple[PlanItem, ...]:
    """Make the plan's ordering explicit where no judgement is needed.

    Dependencies on ids the plan does not have (or on the item itself) are dropped;
    items that write the same file are ordered as the plan lists them (each depends on the
    file's previous writer unless one already comes after the other); then a step that
    writes exactly the files of the step it depends on is folded into it. Small models
    write such plans often, and asking them again rarely helps. Whatever is still wrong (no
    items, repeated ids, a cycle) is left for ``validate_plan`` to report.
    """
    known = {item.id for item in items}
    deps = {
        item.id: [d for d in dict.fromkeys(item.depends_on) if d in known and d != item.id]
        for item in items
    }
    last_writer: dict[str, str] = {}
    for item in items:
        for path in item.files:
            previous = last_writer.get(path)
            if previous is not None and previous != item.id:
                ancestors = _ancestors(_with_deps(items, deps))
                ordered = previous in ancestors[item.id] or item.id in ancestors[previous]
                if not ordered:
                    deps[item.id].append(previous)
            last_writer[path] = item.id
    return _merge_same_files(_with_deps(items, deps))


def _merge_same_files(items: tuple[PlanItem, ...]) -> tuple[PlanItem, ...]:
    """Fold a step into the step it depends on when both write exactly the same files.

    Small models split "create mathutils.py" from "write add() in mathutils.py"; the
    second step then rewrites the file the first just wrote, one more call that can only
    break it. The folded step also waits for the later step's other dependencies; there is
    no fold where one of them itself waits for the earlier step (that would be a cycle).
    """
    if len({item.id for item in items}) != len(items):
        return items  # repeated ids: validate_plan says so
    while True:
        by_id = {item.id: item for item in items}
        ancestors = _ancestors(items)
        pair = next(
            (
                (by_id[dep], later)
                for later in items
                for dep in later.depends_on
                if _foldable(by_id[dep], later, ancestors)
            ),
            None,
        )
        if pair is None:
            return items
        earlier, later = pair
        deps, pair_ids = (*earlier.depends_on, *later.depends_on), (earlier.id, later.id)
        merged = earlier.model_copy(
            update={
                "title": f"{earlier.title}; {later.title}",
                "description": f"{earlier.description}\n{later.description}".strip(),
                "depends_on": tuple(d for d in dict.fromkeys(deps) if d not in pair_ids),
            }
        )
        items = tuple(
            merged if item.id == earlier.id else _renamed_dependency(item, later.id, earlier.id)
            for item in items
            if item.id != later.id
        )


def _renamed_dependency(item: PlanItem, old: str, new: str) -> PlanItem:
    if old not in item.depends_on:
        return item
    deps = dict.fromkeys(new if d == old else d for d in item.depends_on)
    return item.model_copy(update={"depends_on": tuple(deps)})


def _foldable(earlier: PlanItem, later: PlanItem, ancestors: dict[str, set[str]]) -> bool:
    processing = earlier.kind is later.kind is NodeKind.PROCESSING
    same_files = bool(earlier.files) and set(earlier.files) == set(later.files)
    acyclic = all(d == earlier.id or earlier.id not in ancestors[d] for d in later.depends_on)
    return processing and same_files and acyclic


def _with_deps(items: tuple[PlanItem, ...], deps: dict[str, list[str]]) -> tuple[PlanItem, ...]:
    return tuple(
        item
        if list(item.depends_on) == deps[item.id]
        else item.model_copy(update={"depends_on": tuple(deps[item.id])})
        for item in items
    )


def _ancestors(items: tuple[PlanItem, ...]) -> dict[str, set[str]]:
    deps = {item.id: set(item.depends_on) for item in items}
    found: dict[str, set[str]] = {}

    def visit(item_id: str) -> set[str]:
        if item_id not in found:
            found[item_id] = set()
            for dep in deps[item_id]:
                found[item_id] |= {dep, *visit(dep)}
        return found[item_id]

    for item_id in deps:
        visit(item_id)
    return found


def ready(items: dict[str, ItemState]) -> list[ItemState]:
    """Planned items whose dependencies are all completed, in plan order."""
    done = {i for i, s in items.items() if s.status is ItemStatus.COMPLETED}
    return [
        s
        for s in items.values()
        if s.status is ItemStatus.PLANNED and all(d in done for d in s.item.depends_on)
    ]


def all_completed(items: dict[str, ItemState]) -> bool:
    return bool(items) and all(s.status is ItemStatus.COMPLETED for s in items.values())


def waiting_for_answer(items: dict[str, ItemState]) -> list[ItemState]:
    return [s for s in items.values() if s.status is ItemStatus.NEEDS_CLARIFICATION]


def with_status(
    items: dict[str, ItemState], item_id: str, status: ItemStatus, **changes: str | None
) -> dict[str, ItemState]:
    if item_id not in items:
        return items
    updated = dict(items)
    updated[item_id] = items[item_id].model_copy(update={"status": status, **changes})
    return updated
