"""A key-value store kept in one JSON file."""

import json
from pathlib import Path
from typing import Any


class KVStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def _save(self) -> None:
        self.path.write_text(json.dumps(self._data))

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._save()

    def delete(self, key: str) -> bool:
        if key not in self._data:
            return False
        del self._data[key]
        self._save()
        return True

    def keys(self) -> list[str]:
        return sorted(self._data)
