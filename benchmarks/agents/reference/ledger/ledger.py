"""Money entries kept in a JSON file."""

import json
from pathlib import Path


class Ledger:
    def __init__(self, path) -> None:
        self.path = Path(path)
        self._entries: list[dict] = []
        if self.path.is_file():
            self._entries = json.loads(self.path.read_text(encoding="utf-8"))

    def _save(self) -> None:
        self.path.write_text(json.dumps(self._entries), encoding="utf-8")

    def add(self, date: str, amount: float, category: str) -> None:
        self._entries.append({"date": date, "amount": amount, "category": category})
        self._save()

    def balance(self) -> float:
        return sum(entry["amount"] for entry in self._entries)

    def by_category(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for entry in self._entries:
            totals[entry["category"]] = totals.get(entry["category"], 0) + entry["amount"]
        return totals

    def entries(self, month=None) -> list[dict]:
        return [
            dict(entry)
            for entry in self._entries
            if month is None or entry["date"].startswith(month)
        ]
