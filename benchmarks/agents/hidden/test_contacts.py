import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "contacts.py"


def contacts(db, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_add_and_find(tmp_path):
    db = tmp_path / "book.json"
    assert contacts(db, "add", "Bob", "bob@example.org").returncode == 0
    assert db.is_file()
    contacts(db, "add", "Ada", "ada@example.org")
    contacts(db, "add", "Carol", "carol@work.test")
    found = contacts(db, "find", "EXAMPLE")
    assert found.returncode == 0
    assert found.stdout.strip().splitlines() == ["Ada <ada@example.org>", "Bob <bob@example.org>"]
    assert contacts(db, "find", "car").stdout.strip() == "Carol <carol@work.test>"


def test_add_again_replaces_the_email(tmp_path):
    db = tmp_path / "book.json"
    contacts(db, "add", "Ada", "old@example.org")
    contacts(db, "add", "Ada", "new@example.org")
    assert contacts(db, "find", "ada").stdout.strip() == "Ada <new@example.org>"


def test_remove(tmp_path):
    db = tmp_path / "book.json"
    contacts(db, "add", "Ada", "ada@example.org")
    assert contacts(db, "remove", "Ada").returncode == 0
    assert contacts(db, "find", "ada").stdout.strip() == ""
    missing = contacts(db, "remove", "Ada")
    assert missing.returncode == 1
    assert missing.stderr.strip()
