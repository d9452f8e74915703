"""A todo list kept in todo.json in the current directory."""

import json
import sys
from pathlib import Path

PATH = Path("todo.json")


def load() -> list[dict[str, object]]:
    return json.loads(PATH.read_text()) if PATH.exists() else []


def save(items: list[dict[str, object]]) -> None:
    PATH.write_text(json.dumps(items, indent=2))


def main(argv: list[str]) -> int:
    items = load()
    if not argv or argv[0] == "list":
        for number, item in enumerate(items, 1):
            print(f"{number}. [{'x' if item['done'] else ' '}] {item['text']}")
        return 0
    if argv[0] == "add" and len(argv) > 1:
        items.append({"text": " ".join(argv[1:]), "done": False})
        save(items)
        print(len(items))
        return 0
    if argv[0] == "done" and len(argv) == 2:
        items[int(argv[1]) - 1]["done"] = True
        save(items)
        return 0
    print("usage: todo.py [list | add TEXT... | done N]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
