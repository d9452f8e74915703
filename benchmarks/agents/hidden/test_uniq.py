import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "uniq.py"
TEXT = "apple\napple\npear\napple\npear\npear\npear\n"


def uniq(tmp_path, *flags):
    (tmp_path / "fruit.txt").write_text(TEXT)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *flags, "fruit.txt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_adjacent_repeats(tmp_path):
    assert uniq(tmp_path) == ["apple", "pear", "apple", "pear"]


def test_all(tmp_path):
    assert uniq(tmp_path, "--all") == ["apple", "pear"]


def test_count(tmp_path):
    assert uniq(tmp_path, "--count") == ["2 apple", "1 pear", "1 apple", "3 pear"]


def test_all_with_count(tmp_path):
    assert uniq(tmp_path, "--all", "--count") == ["3 apple", "4 pear"]
