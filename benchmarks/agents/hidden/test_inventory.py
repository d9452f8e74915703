import pytest
from inventory import Inventory


def test_add_count_total():
    inv = Inventory()
    inv.add("apple", 3)
    inv.add("apple")
    inv.add("pear", 2)
    assert inv.count("apple") == 4
    assert inv.count("kiwi") == 0
    assert inv.total() == 6
    assert inv.items() == {"apple": 4, "pear": 2}


def test_remove():
    inv = Inventory()
    inv.add("apple", 3)
    inv.remove("apple", 2)
    assert inv.count("apple") == 1
    inv.remove("apple")
    assert inv.items() == {}


def test_remove_errors():
    inv = Inventory()
    inv.add("apple", 1)
    with pytest.raises(KeyError):
        inv.remove("kiwi")
    with pytest.raises(ValueError):  # noqa: PT011
        inv.remove("apple", 2)
    assert inv.count("apple") == 1


def test_quantities_must_be_positive():
    inv = Inventory()
    with pytest.raises(ValueError):  # noqa: PT011
        inv.add("apple", 0)
    with pytest.raises(ValueError):  # noqa: PT011
        inv.add("apple", -1)
