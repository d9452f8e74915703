import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "scores.py"


def scores(db, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_top_keeps_the_best_score(tmp_path):
    db = tmp_path / "scores.json"
    assert scores(db, "add", "ada", "300").returncode == 0
    scores(db, "add", "bob", "200")
    scores(db, "add", "ada", "100")
    scores(db, "add", "cy", "200")
    done = scores(db, "top", "3")
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["1. ada 300", "2. bob 200", "3. cy 200"]
    assert scores(db, "top", "1").stdout.splitlines() == ["1. ada 300"]


def test_reset(tmp_path):
    db = tmp_path / "scores.json"
    scores(db, "add", "ada", "5")
    assert scores(db, "reset").returncode == 0
    assert scores(db, "top", "5").stdout.strip() == ""


def test_bad_score(tmp_path):
    db = tmp_path / "scores.json"
    done = scores(db, "add", "ada", "lots")
    assert done.returncode == 1
    assert done.stderr.strip()
