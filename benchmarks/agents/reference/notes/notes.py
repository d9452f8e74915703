"""Notes kept in a JSON file."""

import json
from pathlib import Path
from typing import Any


class NoteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            data = json.loads(self.path.read_text())
        else:
            data = {"next_id": 1, "notes": []}
        self._next_id: int = data["next_id"]
        self._notes: list[dict[str, Any]] = data["notes"]

    def _save(self) -> None:
        self.path.write_text(json.dumps({"next_id": self._next_id, "notes": self._notes}))

    def add(self, title: str, body: str, tags: list[str] | None = None) -> int:
        note = {"id": self._next_id, "title": title, "body": body, "tags": list(tags or [])}
        self._notes.append(note)
        self._next_id += 1
        self._save()
        return int(note["id"])

    def get(self, note_id: int) -> dict[str, Any]:
        for note in self._notes:
            if note["id"] == note_id:
                return dict(note)
        raise KeyError(note_id)

    def search(self, text: str) -> list[int]:
        needle = text.lower()
        return [
            n["id"]
            for n in self._notes
            if needle in n["title"].lower() or needle in n["body"].lower()
        ]

    def by_tag(self, tag: str) -> list[int]:
        return [n["id"] for n in self._notes if tag in n["tags"]]

    def delete(self, note_id: int) -> None:
        self.get(note_id)
        self._notes = [n for n in self._notes if n["id"] != note_id]
        self._save()
