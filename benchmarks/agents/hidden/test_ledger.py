import pytest
from ledger import Ledger


def test_balance_and_categories(tmp_path):
    ledger = Ledger(tmp_path / "money.json")
    assert ledger.balance() == 0
    ledger.add("2024-03-01", 1000, "salary")
    ledger.add("2024-03-02", -45.5, "food")
    ledger.add("2024-04-01", -20, "food")
    assert ledger.balance() == pytest.approx(934.5)
    totals = ledger.by_category()
    assert set(totals) == {"salary", "food"}
    assert totals["food"] == pytest.approx(-65.5)
    assert totals["salary"] == pytest.approx(1000)


def test_entries_by_month(tmp_path):
    ledger = Ledger(tmp_path / "money.json")
    ledger.add("2024-03-01", 10, "a")
    ledger.add("2024-04-01", 20, "b")
    ledger.add("2024-03-15", 30, "c")
    assert [e["amount"] for e in ledger.entries()] == [10, 20, 30]
    march = ledger.entries("2024-03")
    assert march == [
        {"date": "2024-03-01", "amount": 10, "category": "a"},
        {"date": "2024-03-15", "amount": 30, "category": "c"},
    ]
    assert ledger.entries(month="2023-01") == []


def test_saved_at_once(tmp_path):
    path = tmp_path / "money.json"
    assert Ledger(path).entries() == []
    Ledger(path).add("2024-01-01", 5, "x")
    again = Ledger(path)
    assert again.balance() == 5
    assert again.entries() == [{"date": "2024-01-01", "amount": 5, "category": "x"}]
