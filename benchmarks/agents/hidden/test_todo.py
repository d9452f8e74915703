import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "todo.py"


def todo(cwd, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_add_prints_the_item_number(tmp_path):
    first = todo(tmp_path, "add", "milk")
    second = todo(tmp_path, "add", "two", "eggs")
    assert first.returncode == 0
    assert first.stdout.strip() == "1"
    assert second.returncode == 0
    assert second.stdout.strip() == "2"


def test_list_shows_items_and_done_marks(tmp_path):
    todo(tmp_path, "add", "milk")
    todo(tmp_path, "add", "two", "eggs")
    assert todo(tmp_path, "done", "1").returncode == 0
    listed = todo(tmp_path, "list")
    assert listed.returncode == 0
    assert listed.stdout.strip().splitlines() == ["1. [x] milk", "2. [ ] two eggs"]


def test_items_are_kept_in_todo_json(tmp_path):
    todo(tmp_path, "add", "milk")
    assert (tmp_path / "todo.json").is_file()
    json.loads((tmp_path / "todo.json").read_text())


def test_empty_list(tmp_path):
    listed = todo(tmp_path, "list")
    assert listed.returncode == 0
    assert listed.stdout.strip() == ""
