from __future__ import annotations

import pytest

from forgeline.core.events import PlanItem
from forgeline.core.plan import (
    ItemState,
    ItemStatus,
    PlanError,
    ready,
    repair_plan,
    validate_plan,
    with_status,
)


def item(i: str, *deps: str) -> PlanItem:
    return PlanItem(id=i, title=i, depends_on=deps)


def test_a_dag_is_valid() -> None:
    validate_plan((item("a"), item("b", "a"), item("c", "a"), item("d", "b", "c")))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ((), "no items"),
        ((item("a"), item("a")), "repeat: a"),
        ((item("a", "zz"),), "unknown zz"),
        ((item("a", "b"), item("b", "a"), item("c")), "cycle: a, b"),
    ],
)
def test_bad_plans_are_refused_with_the_reason(items: tuple[PlanItem, ...], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        validate_plan(items)


def test_ready_items_have_all_dependencies_completed() -> None:
    items = {
        i.id: ItemState(item=i) for i in (item("a"), item("b", "a"), item("c"), item("d", "b", "c"))
    }
    assert [s.item.id for s in ready(items)] == ["a", "c"]
    items = with_status(items, "a", ItemStatus.COMPLETED)
    items = with_status(items, "c", ItemStatus.RUNNING)
    assert [s.item.id for s in ready(items)] == ["b"]
    items = with_status(items, "b", ItemStatus.COMPLETED)
    assert ready(items) == []  # d still waits for c
    items = with_status(items, "c", ItemStatus.COMPLETED)
    assert [s.item.id for s in ready(items)] == ["d"]


def test_items_that_may_run_together_cannot_write_the_same_file() -> None:
    a = PlanItem(id="a", title="a", files=("app.py",))
    b = PlanItem(id="b", title="b", files=("app.py",))
    with pytest.raises(PlanError, match=r"both write app\.py"):
        validate_plan((a, b))
    validate_plan((a, b.model_copy(update={"depends_on": ("a",)})))
    c = PlanItem(id="c", title="c", depends_on=("a",), files=("x.py",))
    d = PlanItem(id="d", title="d", depends_on=("c",), files=("app.py",))
    validate_plan((a, c, d))  # d comes after a through c


def test_repair_orders_items_that_write_the_same_file_as_the_plan_lists_them() -> None:
    a = PlanItem(id="a", title="a", files=("app.py",))
    b = PlanItem(id="b", title="b", files=("app.py", "test_app.py"))
    c = PlanItem(id="c", title="c", files=("test_app.py",))
    repaired = repair_plan((a, b, c))
    assert [i.depends_on for i in repaired] == [(), ("a",), ("b",)]
    validate_plan(repaired)


def test_repair_keeps_an_order_the_plan_already_has() -> None:
    a = PlanItem(id="a", title="a", depends_on=("b",), files=("app.py", "README.md"))
    b = PlanItem(id="b", title="b", files=("app.py",))
    c = PlanItem(id="c", title="c", depends_on=("a",), files=("x.py",))
    d = PlanItem(id="d", title="d", depends_on=("c",), files=("app.py",))
    assert repair_plan((a, b, c, d)) == (a, b, c, d)  # b, a, d already run in order


def test_repair_drops_dependencies_on_missing_items_and_on_the_item_itself() -> None:
    repaired = repair_plan((item("a", "a", "zz"), item("b", "a", "a")))
    assert [i.depends_on for i in repaired] == [(), ("a",)]


def test_repair_leaves_what_needs_judgement_to_validation() -> None:
    with pytest.raises(PlanError, match="cycle"):
        validate_plan(repair_plan((item("a", "b"), item("b", "a"))))
    with pytest.raises(PlanError, match="repeat"):
        validate_plan(repair_plan((item("a"), item("a"))))


def test_repair_folds_a_step_into_the_one_before_it_that_writes_the_same_files() -> None:
    # As a 1.5B model plans "a module with add() and its test".
    plan = (
        PlanItem(id="a", title="module", description="Create mathutils.py.", files=("m.py",)),
        PlanItem(id="b", title="add", description="Write add.", depends_on=("a",), files=("m.py",)),
        PlanItem(id="c", title="tests", description="Create the tests.", files=("test_m.py",)),
        PlanItem(id="d", title="test add", depends_on=("c", "b"), files=("test_m.py",)),
    )
    repaired = repair_plan(plan)
    assert [(i.id, i.depends_on, i.files) for i in repaired] == [
        ("a", (), ("m.py",)),
        ("c", ("a",), ("test_m.py",)),  # d's dependency on b, now on a
    ]
    assert repaired[0].title == "module; add"
    assert repaired[0].description == "Create mathutils.py.\nWrite add."
    validate_plan(repaired)


def test_repair_does_not_fold_where_it_would_make_a_cycle() -> None:
    a = PlanItem(id="a", title="a", files=("app.py",))
    c = PlanItem(id="c", title="c", depends_on=("a",), files=("x.py",))
    b = PlanItem(id="b", title="b", depends_on=("a", "c"), files=("app.py",))
    assert repair_plan((a, c, b)) == (a, c, b)  # a would wait for c, which waits for a
